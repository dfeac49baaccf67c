"""Layering: the core imports no web or CLI framework; the pure modules import no database layer.

Edge modules (governance/cli.py, governance/client/) may import typer or httpx; everything else
is core. Imports are read statically with `ast`, including those inside functions and
`importlib.import_module("...")` / `__import__("...")` calls with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "governance"
EDGE = [PACKAGE / "cli.py", PACKAGE / "client"]
WEB_OR_CLI = {"fastapi", "starlette", "typer", "httpx", "click", "uvicorn", "api"}
DATABASE = {"sqlmodel", "sqlalchemy", "psycopg", "psycopg2", "psycopg_pool", "asyncpg"}
PURE = [PACKAGE / "policy", PACKAGE / "provenance", PACKAGE / "strict_yaml.py", PACKAGE / "identity" / "institutional.py",
        PACKAGE / "crypto"]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every absolute module name `path` imports (relative imports resolved against `root`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.add(node.args[0].value)
    return found


def top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


ALL_FILES = sorted(PACKAGE.rglob("*.py"))
CORE = [p for p in ALL_FILES if not _under(p, EDGE)]
PURE_FILES = [p for p in ALL_FILES if _under(p, PURE)]


def test_walker_sees_every_module() -> None:
    assert len(ALL_FILES) >= 15
    assert PACKAGE / "cli.py" in ALL_FILES and PACKAGE / "cli.py" not in CORE
    assert PACKAGE / "policy" / "evaluate.py" in CORE and PACKAGE / "policy" / "evaluate.py" in PURE_FILES
    assert PACKAGE / "identity" / "institutional.py" in PURE_FILES
    assert PACKAGE / "strict_yaml.py" in PURE_FILES
    assert PACKAGE / "crypto" / "crypt4gh.py" in PURE_FILES


def test_walker_finds_typer_in_cli() -> None:
    """The check can fail: the edge module's own framework import is seen."""
    assert "typer" in top_levels(PACKAGE / "cli.py")
    assert top_levels(PACKAGE / "cli.py") & WEB_OR_CLI


def test_walker_resolves_relative_and_dynamic_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "governance" / "policy"
    pkg.mkdir(parents=True)
    probe = pkg / "probe.py"
    probe.write_text(
        "from . import x\nfrom ..identity import institutional\n"
        "import importlib\n\ndef f():\n    import fastapi.routing\n    importlib.import_module('sqlalchemy.orm')\n",
        encoding="utf-8",
    )
    names = imported_modules(probe, tmp_path)
    assert {"governance.policy", "governance.policy.x", "governance.identity.institutional",
            "fastapi.routing", "sqlalchemy.orm", "importlib"} <= names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_web_or_cli_framework(path: Path) -> None:
    bad = top_levels(path) & WEB_OR_CLI
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; only governance/cli.py and governance/client/ may"


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_no_database_layer(path: Path) -> None:
    bad = top_levels(path) & DATABASE
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; the pure core must not touch the database"


@pytest.mark.parametrize("path", sorted((PACKAGE / "crypto").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_crypt4gh_format_imports_only_the_standard_library_and_cryptography(path: Path) -> None:
    import sys

    allowed = {"governance.errors", "governance.crypto"}
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "cryptography" or name == "__future__":
            continue
        assert any(name == a or name.startswith(a + ".") for a in allowed), \
            f"{path.relative_to(ROOT)} imports {name}; the Crypt4GH format needs only the standard library and cryptography"
