import numpy as np

from dim_sklearn import PointSetCache, PointSetConfig, build_point_set, build_point_sets
from dim_sklearn.cache import structure_key


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

    monkeypatch.setattr("dim_sklearn.pointset.build_point_set", fail)
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
    assert cache.get(perovskite, config) is None
    rebuilt = build_point_sets([perovskite], cache=cache)[0]
    assert _same(rebuilt, expected) and _same(cache.get(perovskite, config), expected)
    assert _same(build_point_set(perovskite), expected)
