"""Every file the package writes: an operating-system failure names the file and the cause, and leaves nothing
half-written that a later run would use (injected failures, and a real full file system where one can be mounted).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from crystals import six_crystals

import dim_sklearn.pretrain as pretraining
from dim_sklearn import (
    DeepInfoMaxFeaturizer,
    DimSklearnError,
    PointSetCache,
    PointSetConfig,
    PretrainedEncoder,
    WriteError,
    build_point_sets,
)
from dim_sklearn._utils import atomic_write
from dim_sklearn.cli import main
from dim_sklearn.pointsets.cache import structure_key
from dim_sklearn.pretrain.checkpoint import load_checkpoint, save_checkpoint
from dim_sklearn.structure_files import Entry, write_features

TINY = dict(width=4, local_dim=2, global_width=4, global_dim=3, n_rbf=2, random_state=0)
"""A small encoder: its files are quick to write."""


@pytest.fixture(scope="module")
def featurizer():
    return DeepInfoMaxFeaturizer(max_epochs=0, **TINY).fit(six_crystals())


def _checkpoint_state(epochs: int) -> dict:
    return {
        "fingerprint": "run",
        "seed": 7,
        "model": {"w": torch.full((2, 3), float(epochs))},
        "optimisers": [],
        "history": [{"epoch": k + 1} for k in range(epochs)],
        "best_loss": 1.0,
        "best_epoch": epochs,
        "bad_epochs": 0,
        "best_state": {"w": torch.ones(2, 3)},
    }


class Checkpoint:
    """A pretraining checkpoint; version k holds k epochs of history."""

    def target(self, folder):
        return folder / "checkpoint.pt"

    def write(self, folder, version, featurizer):
        save_checkpoint(_checkpoint_state(version), self.target(folder))

    def read(self, folder):
        return len(load_checkpoint(self.target(folder), torch.device("cpu"), "run")["history"])


class CacheEntry:
    """A point-set cache entry; version k is the entry of the k-th crystal (all in one file name's place)."""

    def target(self, folder):
        return PointSetCache(folder)._path(structure_key(six_crystals()[0], PointSetConfig()))

    def write(self, folder, version, featurizer):
        cache = PointSetCache(folder)
        cache.put(six_crystals()[0], PointSetConfig(), build_point_sets(six_crystals()[version : version + 1])[0])

    def read(self, folder):
        point_set = PointSetCache(folder).get(six_crystals()[0], PointSetConfig())
        return point_set.distances.tobytes()


class SavedEncoder:
    """A saved encoder folder (the error names one of its two files); version k holds weights scaled by k."""

    def target(self, folder):
        return folder / "enc"

    def write(self, folder, version, featurizer):
        module = featurizer.encoder_.module
        scaled = type(module)(module.config)
        scaled.load_state_dict({name: version * t for name, t in module.state_dict().items()})
        PretrainedEncoder(scaled, featurizer.encoder_.point_set_config).save(folder / "enc")

    def read(self, folder):
        return float(PretrainedEncoder.load(folder / "enc").state_dict()["global_.mu.bias"].sum())


class FeatureCsv:
    """The CSV of ``dim-sklearn featurize``; version k holds k rows."""

    def target(self, folder):
        return folder / "features.csv"

    def write(self, folder, version, featurizer):
        entries = [Entry(f"c{k}", structure=s) for k, s in enumerate(six_crystals()[:version])]
        write_features(entries, featurizer, self.target(folder), progress=False)

    def read(self, folder):
        return self.target(folder).read_text()


WRITERS = [Checkpoint(), CacheEntry(), SavedEncoder(), FeatureCsv()]


def _fail_writes(monkeypatch):
    """Every write to a file opened by os.fdopen fails as on a full disk."""
    fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: FullDisk(fdopen(fd, *args, **kwargs)))


def _fail_creation(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def _fail_rename(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", refuse)


FAULTS = {
    "full disk": (_fail_writes, errno.ENOSPC),
    "no permission": (_fail_creation, errno.EACCES),
    "failing rename": (_fail_rename, errno.EIO),
}


def _scratch_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: type(w).__name__)
def test_a_failed_write_names_the_file_and_cause_and_keeps_the_previous_file(
    writer, fault, featurizer, tmp_path, monkeypatch
):
    writer.write(tmp_path, 1, featurizer)
    before = writer.read(tmp_path)
    inject, code = FAULTS[fault]
    with monkeypatch.context() as patch:
        inject(patch)
        with pytest.raises(WriteError) as info:
            writer.write(tmp_path, 2, featurizer)
    error = info.value
    assert isinstance(error, OSError) and isinstance(error, DimSklearnError)
    assert str(writer.target(tmp_path)) in str(error) and os.strerror(code) in str(error)
    assert error.errno == code and isinstance(error.__cause__, OSError)
    assert writer.read(tmp_path) == before  # the previous file, whole and usable
    assert not _scratch_files(tmp_path)
    writer.write(tmp_path, 2, featurizer)  # the next run writes normally
    assert writer.read(tmp_path) != before


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: type(w).__name__)
def test_a_failed_first_write_leaves_nothing(writer, featurizer, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        _fail_writes(patch)
        with pytest.raises(WriteError, match="No space left on device"):
            writer.write(tmp_path, 1, featurizer)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_saved_encoder_is_replaced_only_when_both_its_files_are_written(featurizer, tmp_path, monkeypatch):
    writer = SavedEncoder()
    writer.write(tmp_path, 1, featurizer)
    files = {p.name: p.read_bytes() for p in (tmp_path / "enc").iterdir()}
    fdopen, opened = os.fdopen, []

    def second_fails(fd, *args, **kwargs):  # the weights are written, then the config hits a full disk
        opened.append(fd)
        if len(opened) == 2:
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fdopen(fd, *args, **kwargs)

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(os, "fdopen", second_fails)
    with pytest.raises(WriteError, match=r"config\.json: No space left on device"):
        writer.write(tmp_path, 2, featurizer)
    assert {p.name: p.read_bytes() for p in (tmp_path / "enc").iterdir()} == files


def test_a_pipe_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with atomic_write(fifo) as out:
            out.write(b"id,reason\n")
        assert os.read(reader, 100) == b"id,reason\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not _scratch_files(tmp_path)


def test_the_error_survives_worker_processes(tmp_path):
    error = pickle.loads(pickle.dumps(WriteError("/x/entry.bin", "No space left on device", errno.ENOSPC)))
    assert (str(error), error.errno, error.filename) == (
        "cannot write /x/entry.bin: No space left on device",
        errno.ENOSPC,
        "/x/entry.bin",
    )
    (tmp_path / "file").write_text("a file where the cache folder should be")
    with pytest.raises(WriteError, match=r"cannot write .*file/cache/.*\.bin: Not a directory"):
        build_point_sets(six_crystals(), cache=PointSetCache(tmp_path / "file" / "cache"), n_jobs=2)


# ---------------------------------------------------------------- a real full file system


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted for the test; skipped where this process may not mount one."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if result.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not allowed here: {result.stderr.strip() or result.returncode}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle, pytest.raises(OSError) as info:
        while True:
            handle.write(b"\0" * 65536)
    assert info.value.errno == errno.ENOSPC
    return filler


def test_full_disk_during_pretraining_keeps_the_last_good_checkpoint_and_resumes_from_it(small_disk, monkeypatch):
    def fit():
        return DeepInfoMaxFeaturizer(
            max_epochs=2, validation_fraction=0.34, checkpoint_dir=str(small_disk), **TINY
        ).fit(six_crystals())

    save = pretraining.save_checkpoint

    def save_then_fill(state, path):
        save(state, path)
        if len(state["history"]) == 1:
            _fill(small_disk)

    with monkeypatch.context() as patch:
        patch.setattr(pretraining, "save_checkpoint", save_then_fill)
        with pytest.raises(WriteError) as info:
            fit()
    checkpoint = small_disk / "checkpoint.pt"
    assert str(info.value) == f"cannot write {checkpoint}: No space left on device"
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint.pt", "filler"]
    first = torch.load(checkpoint, weights_only=True)["history"]
    assert [row["epoch"] for row in first] == [1]

    (small_disk / "filler").unlink()
    resumed = fit()
    assert [row["epoch"] for row in resumed.history_] == [1, 2]
    assert resumed.history_[0] == first[0]


def test_full_disk_under_the_cache_leaves_no_entry_and_the_next_run_rebuilds(small_disk):
    filler = _fill(small_disk)
    cache = PointSetCache(small_disk / "cache")
    with pytest.raises(WriteError, match=rf"cannot write {small_disk}/cache/.*\.bin: No space left on device"):
        build_point_sets(six_crystals(), cache=cache)
    assert not [p for p in (small_disk / "cache").rglob("*") if p.is_file()]
    filler.unlink()
    cached = build_point_sets(six_crystals(), cache=cache)
    assert len(list((small_disk / "cache").rglob("*.bin"))) == 6
    for a, b in zip(cached, build_point_sets(six_crystals())):
        np.testing.assert_array_equal(a.distances, b.distances)


def test_full_disk_when_saving_or_writing_features_leaves_nothing_to_load(small_disk, featurizer, tmp_path, capsys):
    encoder = tmp_path / "encoder"
    featurizer.save(encoder)
    six_crystals()[0].to(filename=str(tmp_path / "a.cif"))
    _fill(small_disk)

    with pytest.raises(WriteError, match=rf"cannot write {small_disk}/enc/encoder.safetensors: No space left"):
        featurizer.save(small_disk / "enc")
    with pytest.raises(FileNotFoundError, match="not a saved dim-sklearn encoder"):
        DeepInfoMaxFeaturizer.load(small_disk / "enc")

    csv = small_disk / "features.csv"
    assert main(["featurize", str(tmp_path / "a.cif"), "-o", str(csv), "--encoder", str(encoder)]) == 1
    assert f"dim-sklearn featurize: error: cannot write {csv}: No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in small_disk.rglob("*") if p.is_file()) == ["filler"]

    (small_disk / "filler").unlink()
    with contextlib.suppress(FileNotFoundError):
        (small_disk / "enc").rmdir()
    assert main(["featurize", str(tmp_path / "a.cif"), "-o", str(csv), "--encoder", str(encoder)]) == 0
    assert csv.read_text().count("\n") == 2
