"""The project's modules import one another without cycles (function-level imports count too)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNOWN = set()  # cycles allowed for now: none


def import_graph():
    mods = {f"utils.{p.stem}": p for p in (ROOT / "utils").glob("*.py") if p.stem != "__init__"}
    mods.update({p.stem: p for p in ROOT.glob("*.py")})
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module in mods:
                    deps.add(node.module)
                elif node.module == "utils":
                    deps |= {f"utils.{a.name}" for a in node.names if f"utils.{a.name}" in mods}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
        graph[name] = deps - {name}
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return set(out)


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset({"a", "b", "c"})}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_no_new_import_cycle():
    graph = import_graph()
    assert {"utils.report", "utils.tables", "utils.runs", "utils.figures", "utils.io", "utils.errors"} <= set(graph)
    found = cycles(graph)
    assert found - KNOWN == set(), f"new import cycle(s): {[sorted(c) for c in found - KNOWN]}"
    assert KNOWN - found == set(), f"cycle(s) broken: drop them from KNOWN: {[sorted(c) for c in KNOWN - found]}"
