"""The label-masking study: protocol, resumable ledger, quick run end to end, report."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback

from dim_sklearn import SiteNetRegressor
from experiments.cli import main as experiments_main
from experiments.protocol import FULL, QUICK, get_target, load_split
from experiments.study import main
from experiments.study.cli import DEFAULT_RESULTS
from experiments.study.features import (
    AUTO,
    FOUNDATION,
    HAND_CRAFTED,
    LONG_BUDGET,
    RAW_UNTRAINED,
    RBF_SCRATCH,
    SCRATCH_COSINE,
    SCRATCH_LONG,
    SCRATCH_MAGPIE_HEAD,
    SCRATCH_WHOLE_COSINE,
    SCRATCH_WHOLE_FAST,
    SCRATCH_WHOLE_L1,
    SHIPPED,
    SHIPPED_COSINE,
    SHIPPED_LONG,
    SHIPPED_MAGPIE_HEAD,
    SHIPPED_WHOLE_COSINE,
    SHIPPED_WHOLE_FAST,
    SHIPPED_WHOLE_L1,
    UNIONS,
    VARIANTS,
)
from experiments.study.runner import (
    COLUMNS,
    ENSEMBLE,
    ENSEMBLE_NETWORKS,
    ENSEMBLE_SEEDS,
    ENSEMBLE_STARTS,
    OPT_IN,
    Ledger,
    Start,
    _asked,
    _merge_metadata,
    fit_uninterrupted,
    standardise,
    starts,
)

REPO = Path(__file__).resolve().parents[1]


def test_standardise_uses_training_rows_and_survives_missing_and_constant_columns():
    table = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [np.nan, 5.0, 4.0], [100.0, 7.0, 6.0]])
    scaled = standardise(table, np.array([0, 1, 2]))
    np.testing.assert_allclose(scaled[:2, 0], [-1, 1])
    assert scaled[2, 0] == 0 and scaled[0, 2] == 0  # missing -> the training mean
    assert (scaled[:, 1] == 0).all()  # constant over the training rows
    assert scaled[3, 0] == pytest.approx(98.0)  # test rows use the training statistics
    assert np.isfinite(scaled).all()


def test_ledger_appends_and_knows_what_is_done(tmp_path):
    ledger = Ledger(tmp_path / "runs.csv")
    row = dict(zip(COLUMNS, ("flla", "t", 50, 0, "DIM", "RF", 0.123456789, 1.0, "")))
    assert not ledger.has(**row)
    ledger.append([row])
    again = Ledger(tmp_path / "runs.csv")
    assert again.has(**row) and not again.has(**{**row, "seed": 1})
    assert pd.read_csv(tmp_path / "runs.csv").mae[0] == 0.123457  # six significant digits keep the file small


def test_two_processes_sharing_a_results_folder_keep_each_others_records(tmp_path):
    path = tmp_path / "label_masking.json"
    first, second = (
        {"runs": [run], "pretraining": {}, "featurisation": {}}
        for run in (
            {"command": "--parts representation", "started": "09:00", "wall_s": 0},
            {"command": "--parts transfer", "started": "09:01", "wall_s": 0},
        )
    )
    _merge_metadata(first, first["runs"][0], path)
    second["pretraining"]["flla"] = {"epochs": 40}
    _merge_metadata(second, second["runs"][0], path)
    first["runs"][-1]["wall_s"], first["featurisation"]["flla"] = 60, {"XRD": 222}
    _merge_metadata(first, first["runs"][0], path)
    saved = json.loads(path.read_text())
    assert [(run["command"], run["wall_s"]) for run in saved["runs"]] == [
        ("--parts representation", 60),
        ("--parts transfer", 0),
    ]
    assert saved["pretraining"] == {"flla": {"epochs": 40}} and saved["featurisation"] == {"flla": {"XRD": 222}}
    assert [p.name for p in tmp_path.iterdir()] == ["label_masking.json"]


class _CtrlC(Callback):
    """Presses Ctrl-C at the end of the first epoch."""

    def on_epoch_end(self, net, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_fine_tuning_stops_the_study_instead_of_recording_a_short_run(structures, targets):
    handler = signal.getsignal(signal.SIGINT)
    regressor = SiteNetRegressor(max_epochs=3, random_state=0, callbacks=[_CtrlC()])
    with pytest.raises(KeyboardInterrupt, match="not recorded"):
        fit_uninterrupted(regressor, structures, targets)
    assert len(regressor.history) == 1  # skorch ended training after one epoch and returned normally
    assert signal.getsignal(signal.SIGINT) is handler
    finished = fit_uninterrupted(SiteNetRegressor(max_epochs=2, random_state=0), structures, targets)
    assert len(finished.history) == 2 and signal.getsignal(signal.SIGINT) is handler


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, data_home):
    results = tmp_path_factory.mktemp("study")
    argv = [
        "--quick",
        "--results-dir",
        str(results),
        "--work-dir",
        str(results / "work"),
        "--quiet",
        "--data-home",
        str(data_home),
    ]
    assert main(argv) == 0
    return results, argv


def test_quick_study_records_every_fit(quick_run):
    results, _ = quick_run
    frame = pd.read_csv(results / "label_masking.csv")
    assert tuple(frame.columns) == COLUMNS
    # DIM, the shipped encoder, untrained (default radial-basis and paper's raw distances), the four matminer
    # sets, CHGNet where it is installed, the unions
    foundation = len(FOUNDATION) if importlib.util.find_spec("chgnet") else 0
    n_features = 4 + len(HAND_CRAFTED) + foundation + len(UNIONS)
    default_ensembles = {start.name for start in ENSEMBLE_STARTS if start.name not in OPT_IN}
    ensembles = QUICK.seeds * len(default_ensembles) * 2  # the blend and the networks alone, from one fit
    per_size = QUICK.subsets * (1 + 3 * (n_features + len(VARIANTS))) + QUICK.seeds * 4 + ensembles
    expected = len(QUICK.label_counts) * per_size
    assert len(frame) == expected
    assert not frame.duplicated(["dataset", "target", "n_labels", "seed", "features", "model"]).any()
    assert np.isfinite(frame.mae).all() and (frame.mae > 0).all()
    assert set(frame.model) == {"mean", "RF", "MLP", "Linear", "fine-tuned", ENSEMBLE, ENSEMBLE_NETWORKS}
    ensembled = frame[frame.model.str.startswith(ENSEMBLE)]
    assert set(ensembled.features) == default_ensembles
    tuned = frame[frame.model == "fine-tuned"]
    assert set(tuned.features) == {"DIM", "untrained", SHIPPED, AUTO}
    assert (tuned.epochs <= QUICK.finetune_max_epochs).all()
    meta = json.loads((results / "label_masking.json").read_text())
    auto = tuned[tuned.features == AUTO]
    kept = [meta[AUTO]["|".join(map(str, row))] for row in auto[list(COLUMNS[:6])].itertuples(index=False)]
    assert {record["kept"] for record in kept} <= {"encoder", "scratch"} and len(kept) == len(auto)
    assert all(set(record["valid_loss"]) == {"encoder", "scratch"} for record in kept)
    assert meta["pretraining"]["matbench_phonons"]["n_train"] == QUICK.train_limit  # training structures only
    assert meta["pretraining"][SHIPPED]["n_train"] > 30_000 and len(meta["pretraining"][SHIPPED]["weights"]) == 8
    wide = meta["pretraining"]["matbench_phonons (DIM, all data sets)"]["corpus"]
    assert wide["train"] == QUICK.train_limit and "matbench_phonons" not in wide
    assert set(frame.features) >= {v.name for v in VARIANTS} | {RAW_UNTRAINED}


def test_quick_study_writes_the_page_and_plots(quick_run):
    results, _ = quick_run
    page = (results / "label_masking.md").read_text()
    assert "## matbench_phonons: last phdos peak (cm^-1)" in page
    assert "| labels | DIM | untrained encoder | best hand-crafted |" in page
    assert "| labels | from scratch | from DIM |" in page
    assert "## How this was run" in page and "--quick" in page
    assert "## Composition features beside DIM vectors" in page and "## Investigation" in page
    assert "## The shipped encoder" in page and "| matbench_phonons last phdos peak | 10 |" in page
    assert '## Never worse than from scratch: `init="auto"`' in page and "cells." in page
    assert (results / "label_masking_magpie_unions.png").is_file()
    png = results / "label_masking_matbench_phonons_last_phdos_peak.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({png.name})" in page


def test_interrupted_study_resumes_with_the_same_results(quick_run):
    results, argv = quick_run
    path = results / "label_masking.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keep, lost = rows[:-12], rows[-12:]  # the last fine-tuning runs and some scikit-learn fits
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(keep)
    assert main(argv) == 0
    frame = pd.read_csv(path)
    assert len(frame) == len(rows)
    key = ["n_labels", "seed", "features", "model"]
    redone = frame.iloc[len(keep) :].set_index(key).mae.sort_index()
    before = pd.DataFrame(lost).astype({"n_labels": int, "seed": int, "mae": float}).set_index(key).mae.sort_index()
    np.testing.assert_allclose(redone.to_numpy(), before.to_numpy(), rtol=1e-5)
    assert main(argv) == 0  # nothing left to run: no new rows
    assert len(pd.read_csv(path)) == len(rows)


def test_report_only_from_the_cli(quick_run):
    results, _ = quick_run
    (results / "label_masking.md").unlink()
    (results / "label_masking_discussion.md").write_text("What the numbers say, by hand.")
    assert experiments_main(["study", "--report-only", "--results-dir", str(results)]) == 0
    page = (results / "label_masking.md").read_text()
    assert "## Discussion\n\nWhat the numbers say, by hand." in page


def test_quick_results_never_land_in_the_study_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("experiments.study.cli.run_study", lambda *args, **kwargs: calls.append(args) or "x")
    main(["--quick", "--work-dir", str(tmp_path)], default_results=str(tmp_path / "docs"))
    main(["--work-dir", str(tmp_path)], default_results=str(tmp_path / "docs"))
    assert calls[0][1] == tmp_path / "results" and calls[1][1] == tmp_path / "docs"


def test_budget_options_reach_the_study(tmp_path, monkeypatch):
    budgets = []
    monkeypatch.setattr(
        "experiments.study.cli.run_study", lambda budget, *args, **kwargs: budgets.append(budget) or "x"
    )
    options = ["--labels", "10000", "--seeds", "1", "--finetune-samples", "600000", "--pretrain-epochs", "6"]
    main(["--work-dir", str(tmp_path), *options], default_results=str(tmp_path / "docs"))
    (budget,) = budgets
    assert (budget.label_counts, budget.seeds, budget.pretrain_epochs) == ((10_000,), 1, 6)
    assert budget.finetune_epochs(10_000) == 60 and budget.finetune_epochs(1_000) == FULL.finetune_max_epochs
    with pytest.raises(SystemExit, match="at least 1"):
        main(["--work-dir", str(tmp_path), "--seeds", "0"], default_results=str(tmp_path / "docs"))


def test_results_default_to_the_checkouts_docs_wherever_the_command_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("experiments.study.cli.run_study", lambda *args, **kwargs: calls.append(args) or "x")
    monkeypatch.chdir(tmp_path)
    assert experiments_main(["study", "--work-dir", str(tmp_path)]) == 0
    assert calls[0][1] == DEFAULT_RESULTS == REPO / "docs" / "results"
    assert not (tmp_path / "docs").exists()


def test_the_study_leaves_the_process_warning_filters_alone(tmp_path, monkeypatch):
    monkeypatch.setattr("experiments.study.cli.run_study", lambda *args, **kwargs: "x")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        before = list(warnings.filters)
        main(["--quick", "--work-dir", str(tmp_path)])
        assert warnings.filters == before


def test_unknown_target_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown target"):
        main(["--targets", "flla/nonsense", "--results-dir", str(tmp_path)])


def test_the_radial_basis_scratch_start_runs_only_when_asked_for(tmp_path, data_home):
    argv = ["--quick", "--parts", "transfer", "--results-dir", str(tmp_path), "--work-dir", str(tmp_path / "work")]
    assert main([*argv, "--quiet", "--data-home", str(data_home), "--features", RBF_SCRATCH]) == 0
    frame = pd.read_csv(tmp_path / "label_masking.csv")
    assert set(frame.features) == {RBF_SCRATCH} and len(frame) == len(QUICK.label_counts) * QUICK.seeds


def test_an_ensemble_without_early_stopping_also_runs_as_a_seed_ensemble_on_all_labels(tmp_path, data_home):
    argv = ["--quick", "--results-dir", str(tmp_path), "--work-dir", str(tmp_path / "work"), "--quiet"]
    argv += ["--data-home", str(data_home), "--features", SCRATCH_WHOLE_COSINE]
    assert main([*argv, "--parts", "seeds"]) == 0  # the seed ensembles alone
    seeds = pd.read_csv(tmp_path / "label_masking.csv")
    assert set(seeds.model) == {ENSEMBLE_SEEDS}
    assert main([*argv, "--parts", "ensemble"]) == 0  # adds the ensembles on folds, keeps the seed ensembles
    frame = pd.read_csv(tmp_path / "label_masking.csv")
    assert frame[frame.model == ENSEMBLE_SEEDS].reset_index(drop=True).equals(seeds)
    assert set(frame.features) == {SCRATCH_WHOLE_COSINE}
    assert set(frame.model) == {ENSEMBLE, ENSEMBLE_NETWORKS, ENSEMBLE_SEEDS}
    assert (frame.model.value_counts() == len(QUICK.label_counts) * QUICK.seeds).all()
    assert np.isfinite(frame.mae).all() and (frame.epochs == QUICK.finetune_max_epochs).all()


def test_unknown_feature_set_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match=r"unknown features \['DIM shiped'\]; known: DIM, untrained"):
        main(["--features", "DIM,DIM shiped", "--results-dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_the_large_set_is_a_target_with_magpie_only_and_fewer_subsets_at_ten_thousand_labels():
    target = get_target("mp_crysxpp/formation_energy_per_atom")
    assert target.baselines == ("Magpie",) and target.unit == "eV/atom"
    assert [FULL.subsets_for(n) for n in (50, 1000, 10_000)] == [25, 25, 5]
    assert get_target("flla/formation_energy_per_atom").baselines[0] == "Magpie"


def test_a_restricted_run_computes_only_what_its_feature_sets_need(data_home, tmp_path, monkeypatch):
    from experiments.study import runner

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the target's own DIM encoder is not needed")

    monkeypatch.setattr(runner, "pretrained_encoder", no_pretraining)
    split = load_split(get_target("matbench_phonons/last phdos peak"), QUICK, data_home)
    meta = {"pretraining": {}, "featurisation": {}}
    only = (SHIPPED, "Magpie + DIM shipped")
    features = runner._representations(split, QUICK, tmp_path, None, None, False, meta, lambda *a: None, only)
    assert set(features) == set(only)
    assert features["Magpie + DIM shipped"].shape == (len(split.structures), 132 + 64)
    assert set(meta["featurisation"]) == {"matbench_phonons/Magpie", f"matbench_phonons/{SHIPPED}"}


def test_opt_in_starts_run_only_when_named_and_the_long_budget_keeps_the_epoch_cap():
    long = Start(SHIPPED_LONG, "pretrained", budget_factor=LONG_BUDGET)
    assert long.max_epochs(FULL, 1000) == LONG_BUDGET * FULL.finetune_epochs(1000) == 120
    assert long.max_epochs(FULL, 100) == FULL.finetune_max_epochs  # 4 x 300 epochs, capped
    assert Start(SHIPPED, "pretrained").max_epochs(FULL, 1000) == 30
    assert not _asked(SHIPPED_LONG, None) and _asked(SHIPPED_LONG, (SHIPPED_LONG,))
    assert _asked(SHIPPED, None) and not _asked(SHIPPED, (SHIPPED_LONG,))
    assert {SHIPPED_LONG, SHIPPED_MAGPIE_HEAD, SCRATCH_LONG, SCRATCH_MAGPIE_HEAD} <= set(OPT_IN)
    assert {SHIPPED_COSINE, SCRATCH_COSINE, SHIPPED_WHOLE_COSINE, SCRATCH_WHOLE_COSINE} <= set(OPT_IN)
    assert {SHIPPED_WHOLE_FAST, SCRATCH_WHOLE_FAST, SHIPPED_WHOLE_L1, SCRATCH_WHOLE_L1} <= set(OPT_IN)


def test_every_start_reaches_its_network_and_can_be_named_on_the_command_line():
    from experiments.study.cli import FEATURES

    for start in (*starts("DIM"), *ENSEMBLE_STARTS):
        assert "," not in start.name  # --features is comma-separated
        net = start.regressor(FULL, 250, seed=3, cache_dir=None)
        assert (net.encoder, net.init, net.composition) == (start.encoder, start.init, start.composition)
        assert (net.lr, net.lr_schedule, net.random_state) == (start.lr, start.lr_schedule, 3)
        assert net.max_epochs == start.max_epochs(FULL, 250)
        assert net.criterion is (start.criterion or torch.nn.MSELoss)
        if start.early_stopping:
            assert net.patience == FULL.finetune_patience and net.train_split is not None
        else:  # every epoch, every label
            assert net.patience is None and net.train_split is None
    assert all(name in FEATURES for name in OPT_IN)
    cosine = next(start for start in ENSEMBLE_STARTS if start.name == SHIPPED_COSINE)
    assert (cosine.lr, cosine.lr_schedule, cosine.early_stopping) == (1e-3, "cosine", True)
    whole = next(start for start in ENSEMBLE_STARTS if start.name == SCRATCH_WHOLE_COSINE)
    assert (whole.encoder, whole.lr_schedule, whole.early_stopping) == (None, "cosine", False)
    absolute = next(start for start in ENSEMBLE_STARTS if start.name == SHIPPED_WHOLE_L1)
    assert (absolute.lr, absolute.early_stopping, absolute.criterion) == (1e-3, False, torch.nn.L1Loss)
