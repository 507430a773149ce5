"""The README's promises about bad input, under the seeded corpus of tests/fuzz_corpus.py.

Every input comes back with its row, in order; a row that is not finite carries
its reason; a strict run raises StructureError naming the position; no case
takes more than a few seconds. The default run checks a 200-case slice of the
corpus built from real structures and one case per kind from hand-built ones;
``-m slow`` runs the full corpus.

The time bound separates bounded from unbounded work, not fast machines from
slow ones: the slowest accepted case (a 250-site cell without symmetry) takes
about 1.5 s on an idle 2-core machine and 5 s on a loaded one, while the inputs
the checks stop (near-singular lattices, 1,000-site cells) keep pymatgen's
primitive-cell search busy for 20 s to over 5 minutes.
"""

import time

import numpy as np
import pandas as pd
import pytest
from fuzz_corpus import BASES, KINDS, make_corpus
from pymatgen.core import IStructure, Lattice, Structure
from pymatgen.io.cif import CifWriter

import dim_sklearn.pointsets.build as pointset
from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor, StructureError, build_point_sets
from dim_sklearn.structure_files import read_cif

SLICE = 200
FULL = 15 * len(KINDS)
MAX_SECONDS = 15.0


def _hand_built() -> list[Structure]:
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    wurtzite = Structure(
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "Zn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38], [2 / 3, 1 / 3, 0.88]],
    )
    return [rocksalt, wurtzite]


@pytest.fixture(scope="module")
def real_bases(mp_cs419):
    return [mp_cs419[0][k] for k in BASES]


def _estimators(bases, cache_dir):
    """An untrained featurizer and a one-epoch regressor on ``bases``, both reading point sets through a cache."""
    featurizer = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0, cache_dir=str(cache_dir)).fit(bases)
    regressor = SiteNetRegressor(
        encoder=featurizer, max_epochs=1, train_split=None, random_state=0, cache_dir=str(cache_dir)
    ).fit(bases, np.arange(len(bases), dtype=float))
    return featurizer, regressor


def _timed_point_sets(entries, monkeypatch):
    """build_point_sets on the batch, recording the seconds each structure took."""
    seconds = []
    build = pointset.build_point_set

    def timed(structure, config=None):
        start = time.perf_counter()
        try:
            return build(structure, config)
        finally:
            seconds.append(time.perf_counter() - start)

    with monkeypatch.context() as patch:
        patch.setattr(pointset, "build_point_set", timed)
        point_sets, errors = build_point_sets(entries, return_errors=True)
    return point_sets, errors, seconds


def _check_promises(cases, featurizer, regressor, monkeypatch):
    entries = [case.entry for case in cases]
    n = len(cases)

    # build_point_sets: one entry per input, a reason for each None, the expected outcome, bounded time
    point_sets, errors, seconds = _timed_point_sets(entries, monkeypatch)
    assert len(point_sets) == len(errors) == len(seconds) == n
    slowest = int(np.argmax(seconds))
    assert seconds[slowest] < MAX_SECONDS, (cases[slowest].kind, seconds[slowest])
    for i, (case, p, error) in enumerate(zip(cases, point_sets, errors)):
        assert (p is None) == (error is not None), case.kind
        if error is not None:
            assert error.startswith(f"structure {i}: ") and len(error) > len(f"structure {i}: ") + 5, error
        assert case.expect != "row" or p is not None, (case.kind, error)
        assert case.expect != "error" or p is None, case.kind
    failed = [i for i, p in enumerate(point_sets) if p is None]
    ok = [i for i, p in enumerate(point_sets) if p is not None]

    # transform (lenient) on a pandas Series: one row per input, NaN exactly where there is a reason, in order
    lenient = featurizer.set_params(ignore_errors=True)
    X = lenient.transform(pd.Series(entries, dtype=object))
    assert X.shape == (n, featurizer.global_dim)
    assert [not np.isfinite(row).all() for row in X] == [error is not None for error in errors]
    np.testing.assert_allclose(X[ok], lenient.transform([entries[i] for i in ok]), rtol=1e-5, atol=1e-6)

    # matminer's featurize_dataframe: the frame's rows, in order, each NaN row with its reason
    column = np.empty(n, dtype=object)
    column[:] = pd.Series(entries, dtype=object).to_numpy()
    df = pd.DataFrame({"structure": column, "kind": [c.kind for c in cases]}, index=[f"case {i}" for i in range(n)])
    out = lenient.featurize_dataframe(df, "structure", ignore_errors=True, return_errors=True, pbar=False)
    assert list(out.index) == list(df.index) and list(out["kind"]) == list(df["kind"])
    features = out[featurizer.feature_labels()].to_numpy(dtype=float)
    np.testing.assert_array_equal(features, X)
    reasons = out["DeepInfoMaxFeaturizer Exceptions"]
    assert [r if isinstance(r, str) else None for r in reasons] == errors

    # strict runs name the first failure's position; every failure alone raises StructureError naming it
    strict = featurizer.set_params(ignore_errors=False)
    if failed:
        for run in (
            lambda: strict.transform(entries),
            lambda: regressor.predict(entries),
            lambda: strict.featurize_dataframe(df, "structure", pbar=False),
        ):
            with pytest.raises(StructureError) as info:
                run()
            assert info.value.index == failed[0]
        for i in failed:
            with pytest.raises(StructureError, match=r"^structure 1: ") as info:
                build_point_sets([cases[ok[0]].entry, entries[i]])
            assert info.value.reason == errors[i].split(": ", 1)[1], cases[i].kind

    # the regressor: a finite prediction for every structure that featurises, in order
    prediction = regressor.predict([entries[i] for i in ok])
    assert prediction.shape == (len(ok),) and np.isfinite(prediction).all()


def test_corpus_is_seeded_large_and_every_prefix_covers_every_kind(real_bases):
    assert len(KINDS) >= 60
    a, b = make_corpus(real_bases, SLICE, seed=3), make_corpus(real_bases, SLICE, seed=3)
    assert [c.kind for c in a] == [c.kind for c in b]
    jittered = [k for k, c in enumerate(a) if c.kind == "jittered 0.01 A"]
    assert np.array_equal(a[jittered[1]].entry.cart_coords, b[jittered[1]].entry.cart_coords)
    assert {c.kind for c in a} == set(KINDS) and FULL >= 1000
    assert {c.expect for c in a} == {"row", "error", "any"}


def test_corpus_slice_keeps_every_promise(real_bases, tmp_path, monkeypatch):
    featurizer, regressor = _estimators(real_bases, tmp_path)
    _check_promises(make_corpus(real_bases, SLICE), featurizer, regressor, monkeypatch)


def test_corpus_from_hand_built_structures_keeps_every_promise(tmp_path, monkeypatch):
    bases = _hand_built()
    featurizer, regressor = _estimators(bases, tmp_path)
    _check_promises(make_corpus(bases, len(KINDS), seed=1), featurizer, regressor, monkeypatch)


@pytest.mark.slow
def test_full_corpus_keeps_every_promise(real_bases, tmp_path, monkeypatch):
    featurizer, regressor = _estimators(real_bases, tmp_path)
    _check_promises(make_corpus(real_bases, FULL, seed=2), featurizer, regressor, monkeypatch)


_NOT_IN_A_CIF = {"not periodic (pbc all False)", "slab pbc (True, True, False)"}  # a CIF's crystal is periodic
_MISLEADING = (
    "Occupancy",
    "tolerance",
    "ZeroDivision",
    "Overflow",
    "cannot convert",
    "reshape",
    "KeyError",
    "Singular",
)
"""Fragments of pymatgen's messages on such files (for coincident atoms, infinite coordinates, an empty loop, a
missing cell or label, a flat cell), none of which names the file's problem."""


def test_corpus_written_as_cifs_reads_back_or_names_the_problem(tmp_path):
    cases = [
        case
        for case in make_corpus(_hand_built(), len(KINDS), seed=1)
        if isinstance(case.entry, IStructure) and case.kind not in _NOT_IN_A_CIF and len(case.entry) <= 500
    ]
    assert len(cases) >= 50
    reasons = []
    for k, case in enumerate(cases):
        path = tmp_path / f"{k}.cif"
        CifWriter(case.entry).write_file(str(path))
        structure, reason = read_cif(path)
        if reason is None:
            (reason,) = build_point_sets([structure], return_errors=True)[1]
        reasons.append(reason)
    for case, reason in zip(cases, reasons):
        assert case.expect != "row" or reason is None, (case.kind, reason)
        assert case.expect != "error" or reason is not None, case.kind
        assert reason is None or not any(fragment in reason for fragment in _MISLEADING), (case.kind, reason)
