"""The README's rule graph (docs/rulegraph.dot and .svg) is the graph the workflow has today."""

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("rulegraph", REPO / "docs" / "rulegraph.py")
rulegraph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rulegraph)


def test_the_committed_rule_graph_is_the_one_the_workflow_writes_today():
    committed = rulegraph.DOT.read_text()
    # Compared as rules, their attributes and the edges between them: Snakemake writes its
    # edges in another order on every run.
    assert rulegraph.structure(rulegraph.rulegraph()) == rulegraph.structure(committed), (
        "the workflow's rules changed: run `make rulegraph` and commit docs/rulegraph.*"
    )
    assert committed == rulegraph.sorted_edges(committed)
    _, nodes, edges = rulegraph.structure(committed)
    assert ("train", "evaluate") in edges and ("report", "all") in edges
    # The picture, too, shows every rule (its bytes vary with the Graphviz version).
    svg = rulegraph.SVG.read_text()
    assert all(f">{rule}</text>" in svg for rule in nodes), nodes


def test_a_changed_graph_is_told_apart():
    committed = rulegraph.DOT.read_text()
    lines = committed.splitlines()
    edge = next(line for line in lines if "->" in line)
    without_an_edge = "\n".join(line for line in lines if line != edge)
    assert rulegraph.structure(without_an_edge) != rulegraph.structure(committed)
    renumbered = committed.replace("\t0[", "\t99[").replace("-> 0\n", "-> 99\n")
    assert rulegraph.structure(renumbered) == rulegraph.structure(committed)
