"""Data-parallel pretraining: two gloo ranks on CPU against one process, a killed rank resumed, the CLI launcher."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dim_sklearn import DeepInfoMaxFeaturizer, build_point_sets
from dim_sklearn.cli import main
from dim_sklearn.nn import DeepInfoMax, SiteNetEncoder
from dim_sklearn.pretrain import PretrainSettings, pretrain

REPO = Path(__file__).resolve().parents[2]
# 60 training and 20 held-out crystals: a held-out loss steady enough to compare curves
SETTINGS = {"max_epochs": 6, "batch_sites": 100, "patience": 50, "lr": 3e-4, "validation_fraction": 0.25}


def _torchrun(result: Path, *args: object) -> subprocess.CompletedProcess:
    """tests/pretrain/ddp_worker.py in 2 gloo ranks on this machine, one thread each."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(REPO / "tests" / "pretrain" / "ddp_worker.py"),
        str(result),
        *map(str, args),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def two_ranks(small_structures, tmp_path_factory):
    """History and weights of the uninterrupted 2-rank run."""
    result = tmp_path_factory.mktemp("ddp") / "whole.pt"
    run = _torchrun(result, json.dumps(SETTINGS))
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(result, weights_only=True)


def test_two_gloo_ranks_follow_the_single_process_held_out_curve(small_structures, two_ranks):
    torch.manual_seed(0)
    history, _ = pretrain(
        DeepInfoMax(SiteNetEncoder()), build_point_sets(small_structures), PretrainSettings(**SETTINGS), random_state=0
    )
    one = np.array([row["valid_loss"] for row in history])
    two = np.array([row["valid_loss"] for row in two_ranks["history"]])
    assert two_ranks["world"] == 2 and len(two) == len(one) == SETTINGS["max_epochs"]
    # each step sees the same crystals; only the in-batch negatives (per rank) and the noise differ
    assert np.all(np.abs(two / one - 1) < 0.2), (one, two)
    assert abs(two[-3:].mean() / one[-3:].mean() - 1) < 0.03, (one, two)
    assert two[-3:].mean() < two[0]


def test_a_killed_rank_resumes_from_the_last_checkpoint(two_ranks, tmp_path):
    killed = _torchrun(tmp_path / "killed.pt", json.dumps(SETTINGS), tmp_path / "run", 2)
    assert killed.returncode != 0 and not (tmp_path / "killed.pt").exists()
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert [row["epoch"] for row in saved["history"]] == [1, 2]

    resumed = _torchrun(tmp_path / "resumed.pt", json.dumps(SETTINGS), tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert [row["epoch"] for row in result["history"]] == [1, 2, 3, 4, 5, 6]
    losses = [
        {k: v for k, v in row.items() if k not in ("seconds", "crystals_per_second")} for row in result["history"]
    ]
    assert losses == [
        {k: v for k, v in row.items() if k not in ("seconds", "crystals_per_second")} for row in two_ranks["history"]
    ]
    for name, tensor in two_ranks["weights"].items():
        assert torch.equal(tensor, result["weights"][name]), name


def test_cli_launches_ranks_with_torchrun(data_home, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "encoder"
    assert (
        main(
            [
                "pretrain",
                "mp_cs419",
                str(out),
                "--limit",
                "40",
                "--max-epochs",
                "2",
                "--nproc-per-node",
                "2",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--checkpoint-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    featurizer = DeepInfoMaxFeaturizer.load(out)
    assert [row["epoch"] for row in featurizer.history_] == [1, 2]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["history"] == featurizer.history_
