"""The documentation site builds with no warnings (broken links, bad docstrings), as `mkdocs build --strict`."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
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
    api = (site / "api" / "index.html").read_text()
    assert "Crystal vectors from a Site-Net encoder pretrained with Deep InfoMax" in api  # docstrings rendered
    assert "SiteNetRegressor" in api and "load_dataset" in api
    assert (site / "getting-started" / "index.html").is_file()
    assert (site / "which-features" / "index.html").is_file()
    assert "benchmarks/speed.py" in (site / "performance" / "index.html").read_text()
    assert "pip install dim-sklearn" in (site / "installation" / "index.html").read_text()
    assert "dim-sklearn pretrain my_cifs/ my-encoder" in (site / "your-structures" / "index.html").read_text()
