"""The library and the experiments beside it: the library needs no plotting or benchmark packages, its packages
depend on each other in the pipeline's direction, and the experiments use only the library's public API."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "dim_sklearn"

LAYERS = {
    # package: the parts of the library it may import besides itself (structures -> point sets -> batches ->
    # encoder -> vectors; the estimators, the data sets and the command line sit on top and may import anything)
    "pointsets": {"_utils", "exceptions"},
    "nn": {"_utils", "exceptions", "pointsets"},
    "pretrain": {"_utils", "exceptions", "pointsets", "nn", "training"},
    "encoder": {"_utils", "exceptions", "pointsets", "nn", "pretrain"},
}


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


def _internal_imports() -> dict[str, set[str]]:
    """The top-level part of the library (package or module, e.g. ``pointsets``) each module of the library imports
    from, by the module's dotted name; imports made only for type checking count too."""
    found: dict[str, set[str]] = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = parts[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                dotted = [*base, *(node.module.split(".") if node.module else [])]
                if len(dotted) == 1:  # ``from . import x`` in dim_sklearn/__init__.py
                    dotted += [alias.name for alias in node.names][:1]
                targets.add(dotted[1])
            elif isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "dim_sklearn":
                targets.add(node.module.split(".")[1] if "." in node.module else "")
            elif isinstance(node, ast.Import):
                targets |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dim_sklearn.")}
        found[name] = targets
    return found


def test_the_packages_import_only_the_stages_before_them():
    """The point sets know nothing of the torch modules, the training loops, the encoder object or the estimators;
    the torch modules nothing of training or the encoder object; the encoder object no estimator or command."""
    imports = _internal_imports()
    assert imports["dim_sklearn.encoder.pretrained"] >= {"nn", "pointsets"}  # the scan sees relative imports
    for package, allowed in LAYERS.items():
        # a package's __main__ (``python -m dim_sklearn.pretrain``) is an entry point: nothing imports it
        modules = [name for name in imports if name.split(".")[1:2] == [package] and not name.endswith(".__main__")]
        assert modules, package
        for module in modules:
            outside = imports[module] - allowed - {package}
            assert not outside, f"{module} imports dim_sklearn.{{{', '.join(sorted(outside))}}}"
