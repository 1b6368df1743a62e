"""Markdown tables of the benchmarks' figures and of their targets."""


def markdown(header, rows, align=None):
    """A markdown table; `align` has one letter per column, l or r (default: the first column
    left, the figures right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if side == "l" else "---:" for side in align]
    return "\n".join(_row(cells) for cells in [header, rule, *rows])


def _row(cells):
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def met(op, bound, value):
    return value >= bound if op == ">=" else value <= bound


def ratios(result, targets, digits=".2f"):
    """Each ratio of `targets` ({key: (op, bound)}) as measured in `result` (wall time), its
    target, whether it is met, and the same ratio in CPU time."""
    rows = []
    for key, (op, bound) in targets.items():
        value = result[key]
        cpu = result["cpu_time_ratios"].get(key)
        rows.append(
            [
                key,
                f"{value:{digits}}",
                f"{op} {bound}",
                "yes" if met(op, bound, value) else "NO",
                "" if cpu is None else f"{cpu:.2f}",
            ]
        )
    return markdown(["ratio", "measured", "target", "met", "in CPU time"], rows, align="lrrlr")
