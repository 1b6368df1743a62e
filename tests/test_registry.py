"""smallcnn.registry is the one list of kinds: no other module tells kinds apart by name."""

import ast
import types

import pytest
from conftest import REPO
from snakemake import parser
from snakemake.sourcecache import LocalSourceFile

from smallcnn import registry

COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


class _SourceCache:
    def open(self, source):
        return open(source.get_path_or_uri(secret_free=True), encoding="utf-8")


def python_of(path):
    """The Python of a .py file, or of a Snakefile / .smk as Snakemake's own parser compiles it,
    with {compiled line: source line}."""
    if path.suffix == ".py":
        return path.read_text(encoding="utf-8"), {}
    linemap = {}
    workflow = types.SimpleNamespace(sourcecache=_SourceCache())
    code, _ = parser.parse(LocalSourceFile(str(path)), workflow, linemap)
    return code, linemap


def _strings(node):
    """String literals of `node`: a literal itself, or the literals of a tuple, list or set."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}


def kind_comparisons(code, linemap=None):
    """(line, kind names) of every ==, !=, in, not in or match case against a kind's name."""
    found = []
    for node in ast.walk(ast.parse(code)):
        sides = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for k, op in enumerate(node.ops):
                if isinstance(op, COMPARISONS):
                    sides += operands[k : k + 2]
        elif isinstance(node, ast.MatchValue):
            sides.append(node.value)
        names = set().union(*map(_strings, sides)) & set(registry.KINDS)
        if names:
            line = (linemap or {}).get(node.lineno, node.lineno)
            found.append((line, sorted(names)))
    return found


def workflow_sources():
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    files += sorted((REPO / "scripts").glob("*.py"))
    files += sorted((REPO / "smallcnn").rglob("*.py"))
    return [path for path in files if path != REPO / "smallcnn" / "registry.py"]


def test_no_module_but_the_registry_compares_against_a_kind_name():
    offenders = {}
    for path in workflow_sources():
        found = kind_comparisons(*python_of(path))
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert offenders == {}, "ask registry.KINDS[kind] instead: " + repr(offenders)
    assert len(workflow_sources()) > 40


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('if kind == "frozen":\n    pass\n', [(1, ["frozen"])]),
        ('x = [e for e in es if e.kind != "features"]\n', [(1, ["features"])]),
        (
            'ok = kinds[name] in ("features", "frozen", "finetuned")\n',
            [(1, ["features", "finetuned", "frozen"])],
        ),
        ('match kind:\n    case "scratch":\n        pass\n', [(2, ["scratch"])]),
        # A kind's name as a value, not compared: an experiment, a model or a dataset name.
        ('model = keras.Model(i, o, name="frozen")\nh5["features"]\n', []),
        ('if layer.name != "augmentation":\n    pass\n', []),
    ],
    ids=["eq", "ne", "in-tuple", "match", "values", "other-strings"],
)
def test_the_check_finds_comparisons_against_kind_names(code, expected):
    assert kind_comparisons(code) == expected


def test_the_check_reads_the_python_of_snakemake_rules(tmp_path):
    rules = tmp_path / "x.smk"
    rules.write_text(
        '"""Rules."""\n\n\nrule a:\n    output:\n        "a.txt",\n'
        '    params:\n        n=lambda wc: 1 if wc.kind == "augmented" else 2,\n'
        '    shell:\n        "touch {output}"\n'
    )
    code, linemap = python_of(rules)
    assert kind_comparisons(code, linemap) == [(8, ["augmented"])]
