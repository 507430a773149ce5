"""The worked examples in docs/examples run as a user would copy them."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path

import numpy as np

from experiments.study.features import HAND_CRAFTED

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def test_magpie_plus_dim_feature_union(capsys, data_home):
    """The FeatureUnion pipeline learns a real property, gives Magpie's columns then DIM's, never re-pretrains."""
    namespace = runpy.run_path(str(EXAMPLES / "magpie_plus_dim.py"))
    assert "Magpie + DIM, 100 labels: test MAE" in capsys.readouterr().out
    structures, y, train, test = (namespace[k] for k in ("structures", "y", "train", "test"))
    assert namespace["mae"] < 0.7 * np.abs(y[test] - y[namespace["labelled"]].mean()).mean()

    model, dim = namespace["model"], namespace["dim"]
    few = structures[:6]  # the study's blocks, each standardised, side by side
    union = model[0]
    blocks = [HAND_CRAFTED["Magpie"](few), dim.transform(few)]
    scalers = [transformer[-1] for _, transformer in union.transformer_list]
    expected = np.hstack([scaler.transform(block) for scaler, block in zip(scalers, blocks)])
    np.testing.assert_allclose(union.transform(few), expected, rtol=1e-6, atol=1e-6)
    pretrained = copy.deepcopy(dim.encoder_.state_dict())
    other = train[-50:]
    model.fit([structures[i] for i in other], y[other])
    for name, weight in dim.encoder_.state_dict().items():
        assert np.array_equal(weight.numpy(), pretrained[name].numpy()), name
