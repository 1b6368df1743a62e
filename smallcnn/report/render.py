"""Rendering the report's context with its Jinja2 template."""

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# The files this module reads at run time, for smallcnn.codehash: a template change reruns the
# report.
PACKAGE_DATA = ("templates/*",)


def render(context):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=format_percent,
        points=format_points,
        pvalue=format_pvalue,
        duration=format_duration,
        thousands=format_thousands,
        number=format_number,
    )
    return environment.get_template("report.html.j2").render(**context)


def format_percent(value, digits=1):
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def format_points(value, digits=1):
    """A difference of accuracies in percentage points, signed."""
    return "n/a" if value is None else f"{100 * value:+.{digits}f}"


def format_pvalue(value):
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def format_duration(seconds):
    if seconds is None:
        return "n/a"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_thousands(value):
    return "n/a" if value is None else f"{int(value):,}"


def format_number(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"
