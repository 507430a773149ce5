import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from crystals import six_crystals

from dim_sklearn import DeepInfoMaxFeaturizer, IncompatibleModelError
from dim_sklearn.pretrain.checkpoint import CHECKPOINT_KEYS, checksum, load_checkpoint, save_checkpoint

TINY = dict(width=4, local_dim=2, global_width=4, global_dim=3, n_rbf=2, random_state=0)


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


def _zip_that_is_not_a_checkpoint() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    return buffer.getvalue()


def _tensor_file() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.zeros(3), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda whole: b"epoch 3\nloss 0.5\n", "cannot be read"),  # a text file: torch's unpickler pops an empty list
        (lambda whole: b"", "cannot be read"),
        (lambda whole: whole[: len(whole) // 2], "cannot be read"),
        (lambda whole: whole[:-1], "cannot be read"),
        (lambda whole: np.random.default_rng(0).bytes(len(whole)), "cannot be read"),
        (lambda whole: b"PK\x03\x04" + np.random.default_rng(1).bytes(500), "cannot be read"),
        (lambda whole: _zip_that_is_not_a_checkpoint(), "cannot be read"),
        (lambda whole: _tensor_file(), "does not hold a checkpoint's contents"),
    ],
    ids=["text", "empty", "half", "all but the last byte", "random bytes", "zip signature", "other zip", "tensor"],
)
def test_every_unreadable_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(_state(), path)
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(IncompatibleModelError, match=message) as info:
        load_checkpoint(path, torch.device("cpu"), "abc")
    assert str(info.value).startswith(f"{path} is not a usable pretraining checkpoint")
    assert "weights_only" not in str(info.value)


def test_a_flipped_bit_is_refused_or_changes_nothing_that_is_read(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(_state(), path)
    whole = path.read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for bit in rng.choice(8 * len(whole), size=200, replace=False):
        damaged = bytearray(whole)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(damaged))
        try:
            state = load_checkpoint(path, torch.device("cpu"), "abc")
        except IncompatibleModelError:
            refused += 1
            continue
        # the bit was in padding or metadata torch does not read: everything read back is intact
        assert state["checksum"] == checksum(_state()) and torch.equal(state["model"]["w"], _state()["model"]["w"])
    assert refused > 0  # many bits are zip padding; the rest are refused


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """The checkpoint of a 1-epoch run of a small encoder on hand-built crystals, as bytes."""
    folder = tmp_path_factory.mktemp("run")
    _small_fit(folder, max_epochs=1)
    return (folder / "checkpoint.pt").read_bytes()


def _small_fit(folder, max_epochs):
    return DeepInfoMaxFeaturizer(
        max_epochs=max_epochs, checkpoint_dir=str(folder), validation_fraction=0.34, **TINY
    ).fit(six_crystals())


def _narrow(weights):
    return {**weights, "encoder.global_.mu.weight": weights["encoder.global_.mu.weight"][:, :1]}


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: {**s, "model": _narrow(s["model"])},
        lambda s: {**s, "best_state": _narrow(s["best_state"])},
        lambda s: {**s, "optimisers": s["optimisers"][:1]},
        lambda s: {**s, "optimisers": [{"state": {}}, {"state": {}}]},
    ],
    ids=["model weights", "best weights", "one optimiser", "optimiser without groups"],
)
def test_consistent_contents_that_do_not_fit_the_model_are_refused(run_checkpoint, tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(run_checkpoint)
    state = damage(torch.load(path, weights_only=True))
    torch.save({**state, "checksum": checksum(state)}, path)  # a file made to pass the checksum and fingerprint
    with pytest.raises(IncompatibleModelError, match="its contents do not fit the model") as info:
        _small_fit(tmp_path, max_epochs=2)
    assert str(info.value).startswith(f"{path} is not a usable pretraining checkpoint")
    path.write_bytes(run_checkpoint)
    assert [row["epoch"] for row in _small_fit(tmp_path, max_epochs=2).history_] == [1, 2]
