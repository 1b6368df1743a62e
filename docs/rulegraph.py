"""The rule graph of the default config, as `snakemake --rulegraph` writes it, for the README.

    .venv/bin/python docs/rulegraph.py     # (or `make rulegraph`) after adding or rewiring a rule

writes docs/rulegraph.dot (Snakemake's DOT with its edges sorted: Snakemake writes them in an
order that changes from run to run) and docs/rulegraph.svg (Graphviz's `dot`). A test checks that
the DOT is the one the workflow writes today.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOT = REPO / "docs" / "rulegraph.dot"
SVG = REPO / "docs" / "rulegraph.svg"
NODE = re.compile(r'\s*(\d+)\[label = "([^"]+)"(.*)\];')
EDGE = re.compile(r"\s*(\d+) -> (\d+)$")


def rulegraph():
    """Snakemake's --rulegraph of the default config, run in an empty folder."""
    snakemake = Path(sys.executable).parent / "snakemake"
    with tempfile.TemporaryDirectory(prefix="rulegraph-") as work:
        command = [snakemake, "--snakefile", REPO / "Snakefile", "--directory", work]
        result = subprocess.run(
            [*map(str, command), "--rulegraph", "--quiet"],
            capture_output=True,
            text=True,
            check=True,
        )
    return result.stdout


def sorted_edges(dot):
    """`dot` with its edges in order and no trailing blanks."""
    lines = [line.rstrip() for line in dot.strip().splitlines()]
    edges = sorted(
        (line for line in lines if EDGE.match(line)),
        key=lambda line: tuple(int(n) for n in EDGE.match(line).groups()),
    )
    others = [line for line in lines if not EDGE.match(line)]
    return "\n".join([*others[:-1], *edges, others[-1]]) + "\n"


def structure(dot):
    """What the graph says, whatever Snakemake numbers its nodes: each rule's node attributes,
    the edges between rules, and every other line."""
    lines = [line.rstrip() for line in dot.strip().splitlines()]
    labels = {m.group(1): m.group(2) for m in map(NODE.match, lines) if m}
    nodes = {m.group(2): m.group(3) for m in map(NODE.match, lines) if m}
    edges = sorted(
        (labels[a], labels[b])
        for a, b in (EDGE.match(line).groups() for line in lines if EDGE.match(line))
    )
    rest = [line for line in lines if not (NODE.match(line) or EDGE.match(line))]
    return rest, nodes, edges


def main():
    DOT.write_text(sorted_edges(rulegraph()))
    subprocess.run(["dot", "-Tsvg", str(DOT), "-o", str(SVG)], check=True)
    print(f"wrote {DOT.relative_to(REPO)} and {SVG.relative_to(REPO)}")


if __name__ == "__main__":
    main()
