"""The protocol every experiment shares: splits, label subsets, the untrained baseline.

The published figures (the demo's table, docs/results) depend on these draws: the pinned positions below are
what the draws gave when those figures were measured.
"""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from experiments.protocol import (
    FULL,
    capped_label_counts,
    get_target,
    holdout_split,
    label_subset,
    load_split,
    streamed_subsets,
    untrained_encoder,
)


def test_holdout_split_is_the_published_80_20_split():
    train, test = holdout_split(np.arange(2000))
    assert (len(train), len(test)) == (1600, 400)
    assert sorted([*train, *test]) == list(range(2000))
    assert train[:5].tolist() == [582, 159, 1827, 318, 708] and test[:5].tolist() == [405, 1190, 1132, 731, 1754]


def test_study_splits_follow_the_protocol(data_home):
    flla = load_split(get_target("flla/formation_energy_per_atom"), FULL, data_home)
    train, test = holdout_split(np.arange(len(flla.structures)))
    np.testing.assert_array_equal(flla.train, train)
    np.testing.assert_array_equal(flla.test, test)
    phonons = load_split(get_target("matbench_phonons/last phdos peak"), FULL, data_home)  # Matbench fold 0
    assert (len(phonons.train), len(phonons.test)) == (1012, 253)
    assert not set(phonons.train) & set(phonons.test)
    assert set(phonons.rows) == set(range(1265))


def test_label_counts_are_capped_at_the_training_split():
    assert capped_label_counts(80, (250, 50, 100, 1000)) == [50, 80]
    assert capped_label_counts(1600, (1000, 50)) == [50, 1000]


def test_keyed_label_subsets_depend_on_seed_and_size_only():
    train = np.arange(100, 600)
    a, b = label_subset(train, 50, 3), label_subset(train, 50, 3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 50 and set(a) <= set(train)
    assert not np.array_equal(a, label_subset(train, 50, 4))
    published = holdout_split(np.arange(2000))[0]
    assert label_subset(published, 50, 3)[:5].tolist() == [893, 846, 954, 969, 650]


def test_streamed_subsets_are_the_demos_draw():
    train = holdout_split(np.arange(2000))[0]
    subsets = streamed_subsets(train, (1000, 50, 250, 100), repeats=5)
    assert list(subsets) == [50, 100, 250, 1000]
    for n, draws in subsets.items():
        assert len(draws) == 5 and all(len(set(s)) == n and set(s) <= set(train) for s in draws)
    assert not np.array_equal(subsets[50][0], subsets[50][1])
    assert subsets[50][0][:5].tolist() == [270, 204, 1035, 1565, 534]
    assert subsets[1000][4][:5].tolist() == [1587, 351, 1260, 1700, 1692]
    # one stream: the subsets of a size depend on what was drawn before it
    assert not np.array_equal(streamed_subsets(train, (100,), 5)[100][0], subsets[100][0])
    assert list(streamed_subsets(train[:80], (50, 100), 1)) == [50, 80]


def test_the_untrained_encoder_depends_on_its_seed_not_on_the_structures_it_is_fitted_on(rocksalt):
    other = Structure(Lattice.cubic(3.0), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    a, b = untrained_encoder([rocksalt]), untrained_encoder([other])
    assert a.get_params()["max_epochs"] == 0 and a.get_params()["random_state"] == 0 and not a.history_
    for name, weight in a.encoder_.state_dict().items():
        assert torch.equal(weight, b.encoder_.state_dict()[name]), name
    raw = untrained_encoder([rocksalt], n_rbf=0)
    assert raw.n_rbf == 0 and a.n_rbf > 0
    np.testing.assert_array_equal(a.transform([rocksalt, other]), b.transform([rocksalt, other]))
