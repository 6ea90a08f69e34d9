"""The package's layers import only downward: data → model → loadgen → workbook, with the
top-level helpers (exceptions, fileio, locks, progress) below them all and the CLI above them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dlrm_nb"
#: Each part of the package and its rank; a module may import only parts of lower or equal rank.
RANKS = {
    "exceptions": 0,
    "fileio": 0,
    "locks": 0,
    "progress": 0,
    "__init__": 0,
    "data": 1,
    "model": 2,
    "loadgen": 3,
    "workbook": 4,
    "cli": 5,
}
LAYERS = ("data", "model", "loadgen", "workbook")


def part_of(module: str) -> str:
    """``dlrm_nb.loadgen.sut`` -> ``loadgen``; ``dlrm_nb`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``dlrm_nb`` import in a file, at any depth (lazy imports count)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; use dlrm_nb.<layer>.<module>")
            if node.module and node.module.split(".")[0] == "dlrm_nb":
                names = [node.module]
                if node.module == "dlrm_nb":  # from dlrm_nb import <module or attribute>
                    names = [f"dlrm_nb.{a.name}" if _is_module(a.name) else "dlrm_nb" for a in node.names]
                found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dlrm_nb"]
    return found


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_lives_in_a_known_part() -> None:
    for path in modules():
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert part in RANKS, f"{path} is in no layer; known: {', '.join(RANKS)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    for line, module in imported_modules(path):
        target = part_of(module)
        assert target in RANKS, f"{path}:{line} imports {module}, which is in no layer"
        assert RANKS[target] <= RANKS[own], (
            f"{path}:{line}: {own} (rank {RANKS[own]}) imports {module} from {target} (rank {RANKS[target]})"
        )


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from dlrm_nb.workbook.runs import load_run\n")
    assert imported_modules(bad) == [(2, "dlrm_nb.workbook.runs")]
    assert RANKS[part_of("dlrm_nb.workbook.runs")] > RANKS["data"]


def test_layers_are_folders() -> None:
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file()
    flat = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__", "cli", "exceptions", "fileio", "locks", "progress"]


def test_the_architecture_page_lists_every_module() -> None:
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = page.split("```", 3)[3]  # the package tree is the second code block
    missing = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if path.name != "__init__.py" and f" {path.name} " not in tree
    ]
    assert not missing, f"docs/architecture.md does not list {missing}: one line per module, its one job"
