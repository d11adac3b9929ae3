"""The package's design holds: three layers whose imports point down only, no import cycle, the public API intact."""

import ast
from pathlib import Path

import veralab as vl

PACKAGE = Path(vl.__file__).resolve().parent
LAYERS = ("core", "experiment", "studies")  # bottom to top


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: veralab modules it imports}, counting imports inside functions too."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("veralab")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("veralab"):
                    found.add(target)
        graph[name] = found
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_listing_shows_three_layers():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_imports_point_down_only():
    upward = [(m, t) for m, targets in import_graph().items() for t in targets
              if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]
    assert not upward, f"modules importing a layer above their own: {upward}"
    core = {t for m, targets in import_graph().items() if _layer(m) == 0 for t in targets}
    assert all(t.startswith("veralab.core") for t in core), core  # the core depends on nothing else in veralab


def test_no_import_cycle():
    graph = import_graph()
    modules = set(graph)

    def resolve(target):  # "from .x import y" may name a module or a name inside a package
        return target if target in modules else target.rpartition(".")[0]

    edges = {m: {resolve(t) for t in ts} - {m} for m, ts in graph.items()}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in edges.get(m, ()):
            if state.get(n) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state and m != "veralab":  # the top-level package re-exports the core, nothing imports it back
            visit(m, [m])


def test_public_api_is_kept():
    for name in ("AdapterConfig", "ConfigError", "AdapterMismatchError", "add_adapters", "merge_adapters",
                 "unmerge_adapters", "count_parameters", "save_adapter", "load_adapter", "export_peft",
                 "import_peft"):
        assert callable(getattr(vl, name)), name
    assert vl.__version__ not in ("", None)
