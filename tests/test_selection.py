"""The encoder selection: candidates from snapshot folders, probes on validation splits, scores against v1."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from dim_sklearn import DeepInfoMaxFeaturizer
from experiments.selection import (
    COLUMNS,
    DECIDING_PROBE,
    FINE_TUNED_PROBES,
    FINETUNE_MARGIN,
    KEY,
    QUICK_PROBES,
    RF_TOLERANCE,
    Candidate,
    candidates,
    choose,
    probe_splits,
    run_selection,
    scores,
    write_report,
)
from experiments.study.runner import Ledger


def test_snapshot_folders_give_one_candidate_per_epoch_and_shipped_names_their_kept_epoch(tmp_path):
    for epoch in (1, 2, 10):
        (tmp_path / "run" / f"epoch-{epoch:03d}").mkdir(parents=True)
    found = candidates([f"w64={tmp_path / 'run'}", "v1=dim-38k"], epochs=[2, 10])
    assert found == [
        Candidate("w64", 2, tmp_path / "run" / "epoch-002"),
        Candidate("w64", 10, tmp_path / "run" / "epoch-010"),
        Candidate("v1", 6, "dim-38k"),
    ]
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        candidates(["dim-38k"])


def test_scores_are_geometric_means_over_targets_of_the_ratio_to_the_reference():
    rows = []
    for candidate, epoch, maes in (("dim-38k", 6, (2.0, 4.0)), ("w64", 3, (1.0, 16.0)), ("w64", 9, (1.0, 2.0))):
        for target, mae in zip(("a", "b"), maes, strict=True):
            for seed, noise in enumerate((-0.5, 0.5)):  # seeds are averaged first
                rows.append(
                    dict(candidate=candidate, epoch=epoch, dataset=target, target="y", probe="fine-tuned",
                         n_labels=250, seed=seed, mae=mae + noise * mae / 10, structures_seen=epoch * 100,
                         pretrain_seconds=epoch * 2.0, valid_local_dim=1.0, valid_global_dim=0.5, seconds=1.0)
                )  # fmt: skip
    table = scores(pd.DataFrame(rows)).set_index(["candidate", "epoch"])
    assert table.loc[("dim-38k", 6), "ratio"] == pytest.approx(1.0)
    assert table.loc[("w64", 3), "ratio"] == pytest.approx(np.sqrt(0.5 * 4))  # 1/2 and 16/4
    assert table.loc[("w64", 9), "ratio"] == pytest.approx(np.sqrt(0.5 * 0.5))
    assert table.loc[("w64", 9), "targets"] == 2 and table.loc[("w64", 9), "structures_seen"] == 900
    running = pd.DataFrame(rows[:-1])  # the last seed of w64 epoch 9 on target b is missing
    assert ("w64", 9) not in scores(running).set_index(["candidate", "epoch"]).index


def test_the_choice_needs_a_recommended_recipe_ratio_beyond_the_noise_and_forests_no_worse():
    decide = f"{DECIDING_PROBE} 250"
    frame = pd.DataFrame(
        {
            "candidate": ["dim-38k", "a", "a", "b", "c"],
            "epoch": [6, 10, 20, 8, 3],
            "RF 250": [1.0, 0.99, RF_TOLERANCE + 0.05, 1.05, 1.0],
            "fine-tuned 250": [1.0, 0.93, 0.85, 0.90, 0.5],
            decide: [1.0, 0.93, 0.85, 0.90, np.nan],
        }
    )
    chosen = choose(frame)  # a at epoch 20 has the lowest ratio, but its forests are too far behind; c lacks the probe
    assert (chosen.candidate, chosen.epoch) == ("b", 8)
    within_noise = [1.0, FINETUNE_MARGIN + 0.01, 1.2, 0.99, np.nan]
    assert choose(frame.assign(**{decide: within_noise})) is None
    assert choose(frame.drop(columns=decide)) is None  # the regressor's defaults alone decide nothing


def test_probe_splits_never_touch_the_test_split(data_home):
    ((split, labels, valid),) = probe_splits(QUICK_PROBES, data_home)
    assert not set(labels) & set(valid) and set(labels) | set(valid) <= set(split.train)
    assert not (set(labels) | set(valid)) & set(split.test) and len(valid) == QUICK_PROBES.valid_size


def test_quick_selection_records_every_probe_once(data_home, small_structures, tmp_path):
    DeepInfoMaxFeaturizer(max_epochs=1, width=16, random_state=0).fit(small_structures[:12]).save(
        tmp_path / "run" / "epoch-001"
    )
    DeepInfoMaxFeaturizer(max_epochs=0, width=16, random_state=0).fit(small_structures[:4]).save(tmp_path / "raw")
    ledger_path = tmp_path / "selection.csv"
    chosen = candidates(["dim-38k=dim-38k", f"tiny={tmp_path / 'run'}", f"untrained={tmp_path / 'raw'}"])
    run_selection(chosen, Ledger(ledger_path, COLUMNS, KEY), probes=QUICK_PROBES, data_home=data_home, log=str)
    ledger = pd.read_csv(ledger_path)
    per_candidate = len(QUICK_PROBES.rf_labels) * QUICK_PROBES.rf_subsets + 2 * QUICK_PROBES.finetune_seeds
    assert set(ledger.probe) == {"RF", *FINE_TUNED_PROBES}
    assert len(ledger) == 3 * per_candidate and np.isfinite(ledger.mae).all() and (ledger.mae > 0).all()
    assert set(ledger[ledger.candidate == "tiny"].epoch) == {1}
    untrained = ledger[ledger.candidate == "untrained"]
    assert set(untrained.epoch) == {0} and (untrained.structures_seen == 0).all()
    run_selection(chosen, Ledger(ledger_path, COLUMNS, KEY), probes=QUICK_PROBES, data_home=data_home, log=str)
    assert len(pd.read_csv(ledger_path)) == len(ledger)  # resumed: nothing run twice
    wider = dataclasses.replace(QUICK_PROBES, rf_labels=(10, 20))
    run_selection(chosen, Ledger(ledger_path, COLUMNS, KEY), ["RF"], wider, data_home=data_home, log=str)
    grown = pd.read_csv(ledger_path)
    assert len(grown) == len(ledger) + 3 * QUICK_PROBES.rf_subsets and not grown.duplicated(list(KEY)).any()
    table = scores(ledger).set_index(["candidate", "probe"])
    assert table.loc[("dim-38k", "RF"), "ratio"] == pytest.approx(1.0)
    assert np.isfinite(table.ratio).all()
    page = write_report(ledger_path, QUICK_PROBES)
    text = page.read_text()
    assert text.count("| tiny ") == 3 and text.count("| dim-38k ") == 3  # a row of ratios, one per fine-tuned probe
    assert "Chosen: tiny" in text or "No candidate beats dim-38k" in text
    assert page.with_suffix(".png").stat().st_size > 10_000


def test_the_published_page_is_generated_from_its_ledger(tmp_path):
    import shutil
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    shutil.copy(results / "encoder_selection.csv", tmp_path / "encoder_selection.csv")
    page = write_report(tmp_path / "encoder_selection.csv")
    assert page.read_text() == (results / "encoder_selection.md").read_text()
