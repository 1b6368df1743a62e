"""Identity of the code a job runs: its script and every smallcnn module that script imports.

Snakemake tracks only a `script:` rule's script file, and ours are thin adapters that hardly
change: a fix in smallcnn/models.py would leave stale models in place. A rule whose params carry
`code=code_hash("scripts/<x>.py")` reruns when any module its script reaches changes, and only
then. This runs at DAG build time, for every rule, so it parses source with `ast` and imports
nothing (no TensorFlow).
"""

import ast
import functools
import hashlib
import re
from pathlib import Path

PACKAGE = "smallcnn"
# The checkout that holds this package: scripts/ is beside it.
ROOT = Path(__file__).resolve().parent.parent
# A module that reads package files at run time (templates) names them in this module-level
# constant: a tuple of glob patterns relative to the package folder, e.g. ("templates/*",).
DATA_CONSTANT = "PACKAGE_DATA"
DIGITS = 12


def code_hash(script_path, root=ROOT):
    """A short hash of the script, the smallcnn modules it imports and the data they declare.

    A relative `script_path` is taken from `root`, the folder that holds the smallcnn package,
    so that the result does not depend on Snakemake's working directory.
    """
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for path in code_files(script_path, root):
        # The name too: moving code between modules is a change of code.
        name = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        digest.update(name.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:DIGITS]


def code_files(script_path, root=ROOT):
    """The script, every smallcnn module it imports (transitively, package __init__ files
    included) and the package data those modules declare, as sorted absolute paths."""
    root = Path(root).resolve()
    script = (root / script_path).resolve()
    if not script.is_file():
        raise FileNotFoundError(f"{script}: no such script to hash")
    found = {script}
    todo = [(script, None)]
    while todo:
        path, module = todo.pop()
        names, patterns = _parse(path.read_bytes(), module, path.name == "__init__.py")
        for pattern in patterns:
            matches = sorted(p for p in (root / PACKAGE).glob(pattern) if p.is_file())
            if not matches:
                raise ValueError(f"{path}: {DATA_CONSTANT} pattern {pattern!r} matches no file")
            found.update(matches)
        for name in names:
            for module_name, module_path in _module_files(name, root):
                if module_path not in found:
                    found.add(module_path)
                    todo.append((module_path, module_name))
    return sorted(found)


def _module_files(name, root):
    """(dotted name, file) of each module that `import <name>` executes, outermost package first;
    none for the trailing parts of `name` that are not modules (names imported from a module)."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:end])
        for path in (base / "__init__.py", base.with_suffix(".py")):
            if path.is_file():
                yield ".".join(parts[:end]), path
                break
        else:
            return


# Lines that may begin an import statement or the DATA_CONSTANT assignment. ruff (E701, E702)
# keeps every statement of this project on lines of its own, so these find all of them.
_IMPORT_START = re.compile(rb"^[ \t]*(?:import|from)[ \t]", re.MULTILINE)
_DATA_START = re.compile(rb"^" + DATA_CONSTANT.encode() + rb"[ \t]*=", re.MULTILINE)
# The longest statement looked for: a parenthesized import of one name per line.
MAX_LINES = 40


@functools.lru_cache(maxsize=256)
def _parse(source, module, is_package):
    """The smallcnn module names that `source` may import, anywhere in it (inside functions
    too), and the patterns of its DATA_CONSTANT. Cached by content: each rule hashes its script,
    and the scripts share most modules.

    Only the statements found by _IMPORT_START are parsed, not the whole module: parsing every
    module the scripts reach took about 45 ms of CPU, which each DAG build would pay.
    """
    names = set()
    for node in _statements_at(source, _IMPORT_START):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            names.add(base)
            # `from smallcnn import models`: models may be a module or a name in __init__.
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    ours = tuple(sorted(n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")))
    return ours, _data_patterns(_statements_at(source, _DATA_START), module)


def _statements_at(source, start):
    """The statement beginning at each match of `start`, parsed on its own; a match that does
    not begin a statement (a docstring line such as "from the cache, ...") yields nothing."""
    for match in start.finditer(source):
        lines = source[match.start() :].split(b"\n", MAX_LINES)[:MAX_LINES]
        lines[0] = lines[0].lstrip()
        # Add lines until the statement parses: a parenthesized import spans several.
        for end in range(1, len(lines) + 1):
            try:
                tree = ast.parse(b"\n".join(lines[:end]))
            except SyntaxError:
                continue
            # Line numbers in the whole source, for messages.
            ast.increment_lineno(tree, source.count(b"\n", 0, match.start()))
            yield from tree.body[:1]
            break


def _absolute(node, module, is_package):
    if not node.level:
        return node.module
    if module is None:
        raise ValueError(f"relative import outside the {PACKAGE} package: line {node.lineno}")
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _data_patterns(statements, module):
    for node in statements:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == DATA_CONSTANT for target in node.targets
        ):
            try:
                patterns = ast.literal_eval(node.value)
            except ValueError:
                patterns = None
            if not isinstance(patterns, tuple) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"{module}: {DATA_CONSTANT} must be a tuple of glob strings")
            return patterns
    return ()
