"""The layout's promises, read from the source: which module may import which.

The crawl flows posts (``inputs``) → requests (``pipeline``) → fetch →
store → outputs, with the job beside it, the commands on top and the Python
API above them; a module
imports only from its own layer or the ones below, the crawl's code never
imports the job, and no modules import each other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import igimages

ROOT = Path(igimages.__file__).parent

#: Each package or module of igimages and its layer; an import may not go to a higher one.
LAYERS = {
    # What everything shares: items and their statuses, errors, signals, names, formats.
    **dict.fromkeys(
        ("items", "errors", "signals", "units", "keys", "atomic", "compat", "redact"), 0
    ),
    **dict.fromkeys(("validation", "settings", "similar"), 0),
    "inputs": 1,
    "store": 1,
    "fetch": 2,
    **dict.fromkeys(("pipeline", "spiders", "outputs", "runtime", "resume", "plan"), 3),
    "report": 4,
    "job": 5,
    # What starts a crawl and tells how it ended; the command line and the Python API on it.
    **dict.fromkeys(("commands", "launch"), 6),
    "api": 7,
}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, *, at_run_time: bool) -> set[str]:
    """The igimages modules ``path`` imports; ``at_run_time``: not those for type checks only."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if at_run_time:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(child) for child in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    known = modules()
    return {name for name in found if name in known}


def layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def test_every_module_has_a_layer():
    assert {name.split(".")[1] for name in modules() if name != "igimages"} <= LAYERS.keys()


def test_the_crawl_never_imports_the_job():
    offenders = {
        (name, imported)
        for name, path in modules().items()
        if name == "igimages" or layer(name) < LAYERS["job"]
        for imported in imports(path, at_run_time=False)
        if imported.startswith("igimages.job")
    }
    assert offenders == set()


def test_no_import_runs_back_up():
    upward = {
        (name, imported)
        for name, path in modules().items()
        if name != "igimages"
        for imported in imports(path, at_run_time=False)
        if imported != "igimages" and layer(imported) > layer(name)
    }
    assert upward == set()


def test_no_modules_import_each_other_in_a_circle():
    graph = {name: imports(path, at_run_time=True) for name, path in modules().items()}
    # A package's own import of its parent package is not a circle of modules.
    for name, edges in graph.items():
        edges.difference_update(p for p in list(edges) if name.startswith(f"{p}."))
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_nothing_outside_the_gate_assigns_to_it():
    """The gate composes its limits when it is built; others only read its view."""
    gate_module = ROOT / "download" / "gate.py"
    assigned = set()
    for name, path in modules().items():
        if path == gate_module:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and "gate" in ast.unparse(target.value):
                    assigned.add((name, ast.unparse(target)))
    assert assigned == set()
