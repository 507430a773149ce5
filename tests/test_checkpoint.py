import pickle

import pytest
import torch

from dim_sklearn import IncompatibleModelError
from dim_sklearn.pretrain.checkpoint import CHECKPOINT_KEYS, checksum, load_checkpoint, save_checkpoint


def _state(**changes):
    state = {
        "fingerprint": "abc",
        "seed": 7,
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "optimisers": [{"state": {}, "param_groups": [{"lr": 1e-3}]}],
        "history": [{"epoch": 1, "loss": 2.5}],
        "best_loss": 2.5,
        "best_epoch": 1,
        "bad_epochs": 0,
        "best_state": {"w": torch.ones(2, 3)},
    }
    return {**state, **changes}


def test_round_trip_holds_every_key_and_value(tmp_path):
    path = tmp_path / "sub" / "checkpoint.pt"
    save_checkpoint(_state(), path)
    loaded = load_checkpoint(path, torch.device("cpu"), "abc")
    assert set(loaded) == CHECKPOINT_KEYS and loaded["checksum"] == checksum(_state())
    assert torch.equal(loaded["model"]["w"], _state()["model"]["w"]) and loaded["history"] == _state()["history"]


def test_checksum_sees_a_changed_value():
    assert checksum(_state()) != checksum(_state(seed=8))
    assert checksum(_state()) != checksum(_state(model={"w": torch.arange(6.0).reshape(3, 2)}))  # shape counts too
    assert checksum({**_state(), "checksum": "anything"}) == checksum(_state())


def test_altered_foreign_and_non_finite_files_are_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(_state(), path)
    with pytest.raises(ValueError, match="other data or settings") as info:
        load_checkpoint(path, torch.device("cpu"), "another run")
    assert not isinstance(info.value, IncompatibleModelError)
    altered = torch.load(path, weights_only=True)
    altered["best_epoch"] = 3
    torch.save(altered, path)
    with pytest.raises(IncompatibleModelError, match="checksum does not match"):
        load_checkpoint(path, torch.device("cpu"), "abc")
    save_checkpoint(_state(best_state={"w": torch.tensor([float("nan")])}), path)
    with pytest.raises(IncompatibleModelError, match="NaN or infinite"):
        load_checkpoint(path, torch.device("cpu"), "abc")


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(_state(), path)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_checkpoint(_state(history=[lambda: 0]), path)  # cannot be written
    assert load_checkpoint(path, torch.device("cpu"), "abc")["history"] == _state()["history"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
