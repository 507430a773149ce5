import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import dim_sklearn.featurizer as featurizer_module
from dim_sklearn import DeepInfoMaxFeaturizer, PointSetCache, StructureError, build_point_sets
from dim_sklearn.pointsets import CachedPointSets, stream_point_sets


def _same(a, b):
    return all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("atomic_numbers", "site_features", "distances", "key_site", "supercell_matrix")
    )


def test_streamed_point_sets_are_read_back_from_the_cache_as_built(perovskite, rocksalt, tmp_path):
    overlapping = Structure(Lattice.cubic(0.3), ["H"], [[0, 0, 0]])
    cache = PointSetCache(tmp_path)
    streamed, errors = stream_point_sets([perovskite, overlapping, rocksalt], cache=cache, ignore_errors=True)
    assert isinstance(streamed, CachedPointSets) and len(streamed) == 2
    assert errors[0] is None and errors[1].startswith("structure 1: ") and errors[2] is None
    assert streamed.n_sites.tolist() == [5, 2]
    assert all(_same(a, b) for a, b in zip(streamed, build_point_sets([perovskite, rocksalt])))
    tail = streamed[1:]
    assert isinstance(tail, CachedPointSets) and tail.n_sites.tolist() == [2] and _same(tail[0], streamed[1])
    with pytest.raises(StructureError, match="structure 1: ") as info:
        stream_point_sets([perovskite, overlapping], cache=cache)
    assert info.value.index == 1
    for entry in tmp_path.rglob("*.bin"):
        entry.unlink()
    with pytest.raises(FileNotFoundError, match="missing or damaged"):
        streamed[0]


def test_fit_with_a_cache_streams_and_trains_the_same_weights(structures, tmp_path, monkeypatch):
    settings = {"max_epochs": 2, "batch_sites": 300, "random_state": 0}
    in_memory = DeepInfoMaxFeaturizer(**settings).fit(structures)
    seen = []
    pretrain = featurizer_module.pretrain

    def spy(model, point_sets, *args, **kwargs):
        seen.append(type(point_sets))
        return pretrain(model, point_sets, *args, **kwargs)

    monkeypatch.setattr(featurizer_module, "pretrain", spy)
    streamed = DeepInfoMaxFeaturizer(cache_dir=str(tmp_path), **settings).fit(structures)
    assert seen == [CachedPointSets]
    assert [row["loss"] for row in streamed.history_] == [row["loss"] for row in in_memory.history_]
    assert np.array_equal(streamed.transform(structures[:10]), in_memory.transform(structures[:10]))
