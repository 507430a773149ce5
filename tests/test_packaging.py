"""The package's metadata and the checks of scripts/check_wheel.py (which CI runs on the real distributions)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check_wheel():
    spec = importlib.util.spec_from_file_location("check_wheel", REPO / "scripts" / "check_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _good_wheel(check_wheel, version: str) -> tuple[list[str], dict[str, bytes]]:
    info = f"dim_sklearn-{version}.dist-info"
    names = [*check_wheel.REQUIRED, "dim_sklearn/nn/encoder.py", f"{info}/licenses/LICENSE", f"{info}/METADATA"]
    names.append(f"{info}/entry_points.txt")
    read = {
        "dim_sklearn/data/README.md": b"Materials Project data, licensed CC BY 4.0",
        f"{info}/METADATA": f"Metadata-Version: 2.4\nName: dim-sklearn\nVersion: {version}\n".encode(),
        f"{info}/entry_points.txt": b"[console_scripts]\ndim-sklearn = dim_sklearn.cli:main\n",
    }
    return names, read


def test_a_complete_wheel_passes_the_content_check(check_wheel):
    names, read = _good_wheel(check_wheel, "1.2.3")
    assert check_wheel.wheel_problems(names, read, "1.2.3") == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda n, r: n.append("tests/test_cli.py"), "not part of the package: tests/test_cli.py"),
        (lambda n, r: n.append("dim_sklearn/docs/api.md"), "not part of the package: dim_sklearn/docs/api.md"),
        (lambda n, r: n.append("experiments/demo.py"), "not part of the package: experiments/demo.py"),
        (
            lambda n, r: n.remove("dim_sklearn/encoder/shipped/dim-38k/encoder.safetensors"),
            "missing dim_sklearn/encoder/shipped",
        ),
        (lambda n, r: n.remove("dim_sklearn/data/mp_crysxpp_2k.json.gz"), "missing dim_sklearn/data/mp_crysxpp_2k"),
        (lambda n, r: n.remove("dim_sklearn-1.2.3.dist-info/licenses/LICENSE"), "missing dim_sklearn-1.2.3.dist-info"),
        (lambda n, r: r.update({"dim_sklearn/data/README.md": b"some structures"}), "does not state its licence"),
        (lambda n, r: r.pop("dim_sklearn-1.2.3.dist-info/entry_points.txt"), "no dim-sklearn console script"),
        (
            lambda n, r: r.update({"dim_sklearn-1.2.3.dist-info/METADATA": b"Name: dim-sklearn\nVersion: 9.9\n"}),
            "METADATA does not give version 1.2.3",
        ),
    ],
)
def test_the_content_check_finds_what_is_wrong(check_wheel, change, problem):
    names, read = _good_wheel(check_wheel, "1.2.3")
    change(names, read)
    problems = check_wheel.wheel_problems(names, read, "1.2.3")
    assert len(problems) == 1 and problem in problems[0]


def test_the_sdist_check_wants_the_sources_and_the_citation_but_no_tests(check_wheel):
    names = [f"dim_sklearn-1.0/{name}" for name in (*check_wheel.REQUIRED, *check_wheel.SDIST_EXTRAS)]
    assert check_wheel.sdist_problems(names, "1.0") == []
    assert check_wheel.sdist_problems([*names, "dim_sklearn-1.0/tests/test_cli.py"], "1.0") == [
        "not part of the sdist: tests/test_cli.py"
    ]
    assert check_wheel.sdist_problems([n for n in names if "CITATION" not in n], "1.0") == ["missing CITATION.cff"]


def test_the_citation_file_gives_the_packages_version_and_the_papers(check_wheel):
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert str(citation["version"]) == check_wheel.project_version()
    assert citation["license"] == "BSD-3-Clause"
    arxiv = {ident["value"] for ref in citation["references"] for ident in ref.get("identifiers", [])}
    assert arxiv == {"arXiv:2209.08190", "arXiv:2407.00671", "arXiv:1808.06670"}


def test_the_changelog_and_the_licence_are_there():
    assert (REPO / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert re.search(r"^## Unreleased$", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
