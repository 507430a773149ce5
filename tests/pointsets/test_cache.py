import warnings

import numpy as np
import pytest

from dim_sklearn import DamagedCacheEntryWarning, PointSetCache, PointSetConfig, build_point_set, build_point_sets
from dim_sklearn.pointsets.cache import structure_key


def _same(a, b):
    return all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("atomic_numbers", "site_features", "distances", "key_site", "supercell_matrix")
    )


def test_second_pass_reads_identical_point_sets(tmp_path, mp_cs419, monkeypatch):
    structures = mp_cs419[0][:30]
    cache = PointSetCache(tmp_path)
    first = build_point_sets(structures, cache=cache)
    assert len(list(tmp_path.rglob("*.bin"))) == 30

    def fail(*args, **kwargs):
        raise AssertionError("a cache hit must not rebuild the point set")

    monkeypatch.setattr("dim_sklearn.pointsets.build.build_point_set", fail)
    second = build_point_sets(structures, cache=PointSetCache(tmp_path))
    assert all(_same(a, b) for a, b in zip(first, second))


def test_key_depends_on_content_and_config(rocksalt, perovskite):
    config = PointSetConfig()
    assert structure_key(rocksalt, config) == structure_key(rocksalt.copy(), config)
    assert structure_key(rocksalt, config) != structure_key(perovskite, config)
    assert structure_key(rocksalt, config) != structure_key(rocksalt, PointSetConfig(max_atoms=20))
    moved = rocksalt.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert structure_key(rocksalt, config) != structure_key(moved, config)
    charged = rocksalt.copy()
    charged.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    assert structure_key(rocksalt, config) != structure_key(charged, config)


def test_corrupt_entry_is_rebuilt(tmp_path, perovskite):
    cache = PointSetCache(tmp_path)
    config = PointSetConfig()
    expected = build_point_sets([perovskite], cache=cache)[0]
    (entry,) = tmp_path.rglob("*.bin")
    entry.write_bytes(entry.read_bytes()[:-7])
    with pytest.warns(DamagedCacheEntryWarning, match=rf"{entry} is a damaged point-set cache entry"):
        assert cache.get(perovskite, config) is None
    with pytest.warns(DamagedCacheEntryWarning):
        rebuilt = build_point_sets([perovskite], cache=cache)[0]
    assert _same(rebuilt, expected) and _same(cache.get(perovskite, config), expected)
    assert _same(build_point_set(perovskite), expected)


def test_one_flipped_bit_anywhere_in_an_entry_is_never_used(tmp_path, perovskite):
    cache = PointSetCache(tmp_path)
    expected = build_point_sets([perovskite], cache=cache)[0]
    (entry,) = tmp_path.rglob("*.bin")
    whole = entry.read_bytes()
    key = entry.stem
    for bit in range(8 * len(whole)):
        damaged = bytearray(whole)
        damaged[bit // 8] ^= 1 << (bit % 8)
        entry.write_bytes(bytes(damaged))
        with pytest.warns(DamagedCacheEntryWarning, match=str(entry)):
            assert cache.read(key) is None, bit
    for cut in (0, 10, 31, 32, len(whole) - 1):
        entry.write_bytes(whole[:cut])
        with pytest.warns(DamagedCacheEntryWarning, match="truncated|checksum"):
            assert cache.read(key) is None, cut
    entry.write_bytes(whole + b"\0")
    with pytest.warns(DamagedCacheEntryWarning):
        assert cache.read(key) is None
    entry.write_bytes(whole)
    assert _same(cache.read(key), expected)


def test_damaged_entries_warn_in_the_caller_when_built_in_worker_processes(tmp_path, perovskite, rocksalt):
    cache = PointSetCache(tmp_path)
    expected = build_point_sets([perovskite, rocksalt])
    build_point_sets([perovskite, rocksalt], cache=cache)
    entries = sorted(tmp_path.rglob("*.bin"))
    for entry in entries:
        raw = bytearray(entry.read_bytes())
        raw[-1] ^= 1
        entry.write_bytes(bytes(raw))
    with pytest.warns(DamagedCacheEntryWarning) as caught:
        rebuilt = build_point_sets([perovskite, rocksalt], cache=cache, n_jobs=2)
    assert {str(entry) for entry in entries} <= {str(w.message).split(" is ")[0] for w in caught}
    assert all(_same(a, b) for a, b in zip(rebuilt, expected))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(_same(a, b) for a, b in zip(build_point_sets([perovskite, rocksalt], cache=cache), expected))
