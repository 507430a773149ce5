"""The documentation site builds with no warnings (broken links, bad docstrings), as `mkdocs build --strict`, and
its API page reads as the docstrings mean it."""

import ast
import html
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dim_sklearn import DeepInfoMaxFeaturizer

REPO = Path(__file__).resolve().parents[1]
SPHINX_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|obj|exc):`?~?[\w.]+")
"""A cross-reference written for Sphinx (``:class:`~dim_sklearn.PointSetConfig```), which the site shows as text."""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return site


@pytest.fixture(scope="module")
def api(site) -> dict[str, str]:
    """The API page's HTML per documented top-level object (its heading's id: the object's path)."""
    parts = re.split(r'<h2 id="([\w.]+)" class="doc doc-heading">', (site / "api" / "index.html").read_text())
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def visible(page: str) -> str:
    """The text a reader sees of some HTML."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_docs_build_strict(site):
    api = (site / "api" / "index.html").read_text()
    assert "Crystal vectors from a Site-Net encoder pretrained with Deep InfoMax" in api  # docstrings rendered
    assert "SiteNetRegressor" in api and "load_dataset" in api
    assert (site / "getting-started" / "index.html").is_file()
    assert (site / "which-features" / "index.html").is_file()
    assert "benchmarks/speed.py" in (site / "performance" / "index.html").read_text()
    assert "pip install dim-sklearn" in (site / "installation" / "index.html").read_text()
    assert "dim-sklearn pretrain my_cifs/ my-encoder" in (site / "your-structures" / "index.html").read_text()


def test_api_page_shows_cross_references_as_links_not_sphinx_text(api):
    documented = re.findall(r"^::: ([\w.]+)$", (REPO / "docs" / "api.md").read_text(), flags=re.M)
    assert sorted(api) == sorted(documented)  # every object of the page is checked
    for name, part in api.items():
        roles = SPHINX_ROLE.findall(visible(part))
        assert not roles, f"{name} shows {roles}: write [`Name`][dim_sklearn.Name] or ``name``"
    featurizer = api["dim_sklearn.DeepInfoMaxFeaturizer"]
    for target in ("dim_sklearn.PretrainedEncoder", "dim_sklearn.PointSetConfig", "dim_sklearn.StructureError"):
        assert f'href="#{target}"' in featurizer, target
    assert 'href="#dim_sklearn.encoder.list_pretrained"' in api["dim_sklearn.PretrainedEncoder"]


def test_api_page_lists_each_featurizer_parameter_once_with_its_own_default(api):
    featurizer = api["dim_sklearn.DeepInfoMaxFeaturizer"]
    start = featurizer.index(">Parameters:<")
    table = featurizer[start : featurizer.index("</table>", start)]
    entries = re.findall(r"<b><code>(\w+)</code></b>\s*\((.*?)\)\s*–", table, flags=re.S)
    signature = inspect.signature(DeepInfoMaxFeaturizer).parameters
    assert [name for name, _ in entries] == list(signature)
    for name, annotation in entries:
        shown = re.search(r"default:\s*<code>(.*?)</code>", annotation, flags=re.S)
        assert shown, name
        assert ast.literal_eval(visible(shown.group(1))) == signature[name].default, (name, shown.group(1))
