"""The core's layout: data flows one way through the stage packages, with no import cycle and no host import.

Package order (an import may only point to the same or an earlier package):
    common -> weights -> models -> io -> geometry -> canonical -> features -> inversion -> shape -> registration -> viz -> run
    -> apps -> evaluation -> synthetic -> setup -> commands (and the top-level cli / __init__ / __main__)
Inside `registration` the stages keep their data-flow order too (framing -> search -> refine -> mapping -> ...).
"""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import congeal

CORE = Path(congeal.__file__).resolve().parent
PACKAGE_ORDER = ["common", "weights", "models", "io", "geometry", "canonical", "features", "inversion", "shape", "registration", "viz",
                 "run", "apps", "evaluation", "synthetic", "setup", "commands"]
# stage modules of `registration` in data-flow order, then the assembly (config of every stage, and poses =
# search -> refine -> select); a listed module may import only modules listed before it
REGISTRATION_ORDER = ["framing", "losses", "search", "refine", "consensus", "trust", "mapping", "state", "queries", "registration_config", "poses"]
HOST_PACKAGES = ("threestudio", "lightning", "pytorch_lightning", "threestudio_congeal")


def _module_name(path: Path) -> str:
    parts = ("congeal",) + path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _all_modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _imports(path: Path, modules: Dict[str, Path]) -> Set[str]:
    """Every module of the congeal package (or a host package) that `path` imports, at any depth of the file."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from congeal.pkg import module` imports a module, not a name
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; the core uses absolute `congeal.` imports")
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _all_modules()
    return {name: {m for m in _imports(path, modules) if m in modules} for name, path in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in PACKAGE_ORDER) else ""


def test_every_core_module_lives_in_a_known_package():
    loose = [m for m in _all_modules() if _package(m) not in PACKAGE_ORDER
             and m not in ("congeal", "congeal.cli", "congeal.__main__")]
    assert not loose, f"modules outside the stage packages: {loose}"


def test_no_import_points_to_a_later_package():
    back_edges: List[Tuple[str, str]] = []
    for module, targets in _graph().items():
        source = _package(module)
        if source not in PACKAGE_ORDER:
            continue  # cli / __init__ / __main__ sit on top of everything
        for target in targets:
            if _package(target) in PACKAGE_ORDER and PACKAGE_ORDER.index(_package(target)) > PACKAGE_ORDER.index(source):
                back_edges.append((module, target))
    assert not back_edges, f"imports against the data flow: {back_edges}"


def test_registration_stages_import_only_earlier_stages():
    back_edges = []
    for module, targets in _graph().items():
        stage = module.rsplit(".", 1)[-1]
        if not module.startswith("congeal.registration.") or stage not in REGISTRATION_ORDER:
            continue
        for target in targets:
            other = target.rsplit(".", 1)[-1]
            if target.startswith("congeal.registration.") and (
                    other not in REGISTRATION_ORDER or REGISTRATION_ORDER.index(other) > REGISTRATION_ORDER.index(stage)):
                back_edges.append((module, target))
    assert not back_edges, f"a registration stage imports a later stage: {back_edges}"


def test_no_import_cycle():
    graph = _graph()
    state: Dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles = []

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state and node != "congeal":  # the package's own lazy __getattr__ is not an import edge
            visit(node, [node])
    cycles = [c for c in cycles if "congeal" not in c]
    assert not cycles, f"import cycles: {cycles}"


def test_the_core_never_imports_the_host():
    modules = _all_modules()
    offenders = [(name, m) for name, path in modules.items() for m in _imports(path, modules)
                 if m.split(".")[0] in HOST_PACKAGES]
    assert not offenders, f"the core imports threestudio / Lightning / the adapters: {offenders}"


def test_a_back_edge_is_caught(tmp_path, monkeypatch):
    """The walker sees imports inside functions too (a lazy import is still a dependency)."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from congeal.run.pipeline import register_collection\n")
    assert "congeal.run.pipeline" in _imports(source, _all_modules())


def test_the_module_map_names_every_module():
    """docs/internals.md maps every module of the core (one line each)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "internals.md").read_text()
    missing = [str(p.relative_to(CORE)) for p in sorted(CORE.rglob("*.py")) if f"`{p.relative_to(CORE).as_posix()}`"
               not in text]
    assert not missing, f"docs/internals.md does not map: {missing}"


def _same_file_names(paths) -> Dict[str, List[str]]:
    by_name: Dict[str, List[str]] = {}
    for path in paths:
        if path.name != "__init__.py":
            by_name.setdefault(path.name, []).append(path.as_posix())
    return {name: places for name, places in by_name.items() if len(places) > 1}


def test_no_two_modules_share_a_file_name():
    """One name, one job: `run/export.py` beside `apps/export.py` made a reader open the wrong one (the adapters too)."""
    extension = CORE.parent
    paths = [p.relative_to(extension) for p in sorted(extension.rglob("*.py"))]
    assert not _same_file_names(paths), f"modules sharing a file name: {_same_file_names(paths)}"


def test_two_modules_with_one_file_name_are_caught():
    assert _same_file_names([Path("run/export.py"), Path("apps/export.py"), Path("apps/__init__.py"),
                             Path("run/__init__.py")]) == {"export.py": ["run/export.py", "apps/export.py"]}
