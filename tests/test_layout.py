"""The library and the experiments beside it: the library needs no plotting or benchmark packages, and the
experiments use only the library's public API."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_library_imports_without_the_experiments_dependencies():
    blocked = ("matplotlib", "matbench", "chgnet", "experiments")
    code = (
        f"import sys, pkgutil, importlib\nsys.modules.update(dict.fromkeys({blocked!r}))\n"
        "import dim_sklearn\n"
        "for m in pkgutil.walk_packages(dim_sklearn.__path__, 'dim_sklearn.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _library_imports() -> list[tuple[str, str, str]]:
    """(file, module, name) of every ``from dim_sklearn... import name`` / ``import dim_sklearn...`` in experiments/."""
    found = []
    for path in sorted((REPO / "experiments").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "dim_sklearn":
                found += [(path.name, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(path.name, alias.name, "") for alias in node.names if alias.name.startswith("dim_sklearn")]
    return found


def test_the_experiments_use_only_the_librarys_public_api():
    imports = _library_imports()
    assert imports
    for file, module, name in imports:
        assert not any(part.startswith("_") for part in module.split(".")), (file, module)
        if name:
            assert name in importlib.import_module(module).__all__, (file, module, name)
