"""Shared helpers: atomic writes never leave a partial file or a stray scratch file."""

import numpy as np
import pytest

from dim_sklearn._utils import atomic_write, derive_seed


def test_atomic_write_replaces_in_one_step_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with atomic_write(target) as handle:
        handle.write(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_two_writers_in_one_folder_use_different_scratch_files(tmp_path):
    target = tmp_path / "checkpoint.pt"
    with atomic_write(target) as a, atomic_write(target) as b:
        assert a.path != b.path
        a.write(b"a")
        b.write(b"b")
    assert target.read_bytes() == b"a"  # the first to finish is replaced by the last


def test_derived_seeds_are_reproducible_and_independent():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, 1), derive_seed(0, 2), derive_seed(1, 1), derive_seed(0, 1, 1)}) == 4
    assert 0 <= derive_seed(7) < 2**63


def test_settings_objects_list_every_broken_field():
    from dim_sklearn import PointSetConfig
    from dim_sklearn.nn import EncoderConfig, SiteNetConfig

    with pytest.raises(ValueError, match=r"max_atoms must be an integer from 1 to 1000, got 2.5; oxidation must be"):
        PointSetConfig(max_atoms=2.5, oxidation="yes")
    with pytest.raises(ValueError, match=r"width must be an integer from 1 to 1024, got 0; n_rbf must be 0 \(raw dis"):
        EncoderConfig(width=0, n_rbf=1)
    with pytest.raises(ValueError, match=r"rbf_cutoff must be a finite number > 0, got nan"):
        EncoderConfig(rbf_cutoff=float("nan"))
    with pytest.raises(ValueError, match=r"SiteNetConfig: heads must be an integer from 1 to 1024, got True"):
        SiteNetConfig(heads=True)
    assert PointSetConfig(max_atoms=np.int64(40)).max_atoms == 40
