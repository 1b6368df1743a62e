"""The mutation score of the last `mutmut run`, per module and in all: `make mutation` prints it.

Killed (and timed-out: the mutant hangs, which a test run notices) over all mutants; mutants no
test reaches count as survivors, and so do mutants not checked (an interrupted run: say so).
Lists the survivors, for tests/MUTANTS.md.
"""

import collections
import re
import subprocess
import sys
from pathlib import Path

KILLED = {"killed", "timeout"}


def results():
    """{mutant name: status} from `mutmut results --all true`."""
    mutmut = Path(sys.executable).parent / "mutmut"
    output = subprocess.run(
        [str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"^\s*(\S+): (.+?)\s*$", output, re.MULTILINE))


def main():
    statuses = results()
    if not statuses:
        sys.exit("no mutmut results: run `make mutation` first")
    by_module = collections.defaultdict(collections.Counter)
    for name, status in statuses.items():
        by_module[name.rsplit(".", 1)[0]][status] += 1
    print(f"{'module':34} {'mutants':>8} {'killed':>8} {'score':>7}")
    for module, counts in sorted(by_module.items()):
        total, killed = sum(counts.values()), sum(counts[s] for s in KILLED)
        print(f"{module:34} {total:8} {killed:8} {killed / total:7.1%}")
    total = len(statuses)
    killed = sum(status in KILLED for status in statuses.values())
    print(f"{'all':34} {total:8} {killed:8} {killed / total:7.1%}")
    timeouts = sum(status == "timeout" for status in statuses.values())
    print(f"killed includes {timeouts} timed out (mutants that hang; `mutmut results` lists them)")
    unchecked = sum(status == "not checked" for status in statuses.values())
    if unchecked:
        print(f"the run was interrupted: {unchecked} mutants not checked, counted as survivors")
    survivors = sorted(name for name, status in statuses.items() if status not in KILLED)
    print(f"\n{len(survivors)} not killed (`mutmut show <name>` shows one):")
    for name in survivors:
        print(f"  {name}: {statuses[name]}")


if __name__ == "__main__":
    main()
