"""The package is a strict stack of layers: no module imports a layer above its own.

Every import in src/modelport (module level, inside functions and under TYPE_CHECKING alike)
is read from the source; an import of a higher layer fails this test with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import modelport

PACKAGE = Path(modelport.__file__).parent

# Bottom to top. Packages on one rank may import each other's modules; nothing imports upwards.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "clock", "protocol"),
    ("tensor",),
    ("config", "shm"),
    ("codecs",),
    ("observability",),
    ("backends",),
    ("scheduling", "testing"),
    ("repository",),
    ("core",),
    ("frontends", "tune"),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_LINES = 410  # "about 400": a module past it is doing more than one thing


def layer_of(module: str) -> str:
    """'modelport.core.server' -> 'core'; 'modelport' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(("modelport", *parts))


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every modelport import in `path`, relative imports resolved."""
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module))
    return [(line, m) for line, m in found if m == "modelport" or m.startswith("modelport.")]


def upward_imports(root: Path) -> list[str]:
    """Every import, under `root` (the package folder), of a layer above the importing module's."""
    upward: list[str] = []
    for path in sorted(root.rglob("*.py")):
        own = layer_of(module_name(path, root))
        for line, module in imported_modules(path, root):
            target = layer_of(module)
            if RANK[target] > RANK[own]:
                upward.append(f"{path.relative_to(root)}:{line} ({own}) imports {module} ({target})")
    return upward


def test_every_package_has_a_layer() -> None:
    packages = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert packages - set(RANK) == set()


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(PACKAGE) == []


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    """The check can fail: absolute, relative and function-level upward imports are all found."""
    (tmp_path / "scheduling").mkdir()
    (tmp_path / "scheduling" / "bad.py").write_text(
        "from modelport.config.spec import ModelSpec\n"
        "from ..repository import manager\n"
        "def late():\n    import modelport.core.server\n"
    )
    assert upward_imports(tmp_path) == [
        "scheduling/bad.py:2 (scheduling) imports modelport.repository (repository)",
        "scheduling/bad.py:4 (scheduling) imports modelport.core.server (core)",
    ]


def test_no_module_is_over_the_size_limit() -> None:
    long = [
        f"{p.relative_to(PACKAGE)}: {n} lines"
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert long == []
