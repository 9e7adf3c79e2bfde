"""The package's import graph: no cycles, and every import points down the layers.

Layers, from the bottom: helpers (config, command_line, extras, errors, fileutil, checkpoints, registry) < data/,
models/ < training/, runtime, distributed/, sweep_stop <
reporting/ < stages/ < commands/ < cli < __main__. Imports inside functions count too: a
function-level import is still a dependency, only a later one.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ulmfit_cli"
LAYERS = [
    {"__init__", "build_info", "config", "command_line", "extras", "errors", "fileutil", "checkpoints", "registry",
     "sysmem"},
    {"data", "models"},
    {"training", "runtime", "distributed", "sweep_stop"},
    {"reporting"},
    {"stages"},
    {"commands"},
    {"cli"},
    {"__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """First-party modules `path` imports anywhere in its body, as dotted names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ulmfit_cli"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "ulmfit_cli":
                target = node.module
            else:
                continue
            for a in node.names:  # `from . import distributed` imports a module
                found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target)
    return {m for m in found if m in known and m != name}


def layer(name: str) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if not any((m.split(".") + ["__init__"])[1] in names for names in LAYERS)]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_imports_only_point_down_the_layers():
    upward = sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
                    for a, deps in graph().items() for b in deps if layer(b) > layer(a))
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The parser finds an import inside a function and resolves `from .. import x` and `from . import y`."""
    src = tmp_path / "ulmfit_cli" / "stages" / "demo.py"
    src.parent.mkdir(parents=True)
    src.write_text("from .. import distributed\nfrom . import context\n\ndef f():\n    from ..cli import main\n")
    known = {m: Path() for m in ("ulmfit_cli.distributed", "ulmfit_cli.stages.context", "ulmfit_cli.cli",
                                 "ulmfit_cli.stages", "ulmfit_cli")}
    found = imports_of("ulmfit_cli.stages.demo", src, known)
    assert found == {"ulmfit_cli.distributed", "ulmfit_cli.stages.context", "ulmfit_cli.cli"}
    assert layer("ulmfit_cli.cli") > layer("ulmfit_cli.stages.demo")  # so the layer test would catch it
