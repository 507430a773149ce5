import time

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from dim_sklearn import PointSetConfig, StructureError, build_point_set, build_point_sets
from dim_sklearn.pointsets.build import minimum_image_distances, point_set_cell, supercell_matrix
from dim_sklearn.pointsets.elements import site_property_table


def _brute_force_distances(lattice, vectors):
    """Exact minimum image: every image within the radius that any vector's image must beat."""
    lattice = np.asarray(lattice)
    volume = abs(np.linalg.det(lattice))
    spacing = np.array(
        [volume / np.linalg.norm(np.cross(lattice[(k + 1) % 3], lattice[(k + 2) % 3])) for k in range(3)]
    )
    radius = np.linalg.norm(vectors, axis=-1).max() + np.linalg.norm(lattice, axis=1).sum()
    reach = np.ceil(radius / spacing).astype(int)
    grid = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), -1).reshape(-1, 3)
    best = np.full(vectors.shape[:-1], np.inf)
    for chunk in np.array_split(grid @ lattice, max(1, len(grid) // 2000)):
        best = np.minimum(best, np.linalg.norm(vectors[..., None, :] + chunk, axis=-1).min(-1))
    return best


@pytest.fixture(scope="module")
def sample(mp_cs419, phonons):
    rng = np.random.default_rng(0)
    structures = mp_cs419[0] + phonons[0]
    return [structures[k] for k in rng.choice(len(structures), 40, replace=False)]


# ---------------------------------------------------------------- supercell


@pytest.mark.parametrize("max_atoms", [20, 50, 100])
def test_supercell_has_at_most_n_sites_and_determinant_is_product_of_counts(sample, max_atoms):
    for structure in sample:
        p = build_point_set(structure, PointSetConfig(max_atoms=max_atoms))
        m = p.supercell_matrix
        assert np.allclose(m, np.triu(m))
        assert round(abs(np.linalg.det(m))) == np.prod(np.diag(m)) == p.n_images
        assert p.n_keys == p.n_sites * p.n_images
        if p.n_sites <= max_atoms:
            assert p.n_keys <= max_atoms
        if 2 * p.n_sites > max_atoms:
            assert p.n_images == 1
        else:  # one more repetition of the shortest axis would pass N
            assert p.n_keys * 2 > max_atoms or p.n_keys + p.n_sites * p.n_images // np.diag(m).min() > max_atoms


def test_large_primitive_cell_is_used_as_is(mp_cs419):
    structures, _ = mp_cs419
    big = max(structures, key=len)  # 152 sites in the primitive cell
    p = build_point_set(big)
    assert p.n_sites == 152 and p.n_images == 1 and p.n_keys == 152
    assert np.array_equal(p.supercell_matrix, np.eye(3))


def test_supercell_is_near_orthorhombic():
    fcc = Lattice([[0, 1.8, 1.8], [1.8, 0, 1.8], [1.8, 1.8, 0]])  # 60 degree angles
    m = supercell_matrix(fcc.matrix, 1, 50)
    cell = Lattice(m @ fcc.matrix)
    assert np.allclose(cell.angles, 90, atol=10)
    defect = lambda lat: np.prod(np.linalg.norm(lat, axis=1)) / abs(np.linalg.det(lat))  # noqa: E731
    assert defect(cell.matrix) < 1.05 < defect(fcc.matrix)
    # Repetitions go to the currently shortest axis: 3 x 3 x 12 A grows to 15 x 15 x 24 A (50 sites).
    m = supercell_matrix(Lattice.tetragonal(3.0, 12.0).matrix, 1, 50)
    assert np.diag(m).tolist() == [5, 5, 2]


def test_mean_orthogonality_improves_on_real_cells(sample):
    def defect(lat):
        return np.prod(np.linalg.norm(lat, axis=1)) / abs(np.linalg.det(lat))

    before, after = [], []
    for structure in sample:
        primitive, _ = point_set_cell(structure)
        m = supercell_matrix(primitive.lattice.matrix, len(primitive), 50)
        before.append(defect(np.diag(np.diag(m)) @ primitive.lattice.matrix))
        after.append(defect(m @ primitive.lattice.matrix))
    assert np.mean(after) < np.mean(before)


# ---------------------------------------------------------------- distances


def test_distances_equal_brute_force_minimum_image(sample):
    rng = np.random.default_rng(1)
    for structure in sample:
        primitive, _ = point_set_cell(structure)
        p = build_point_set(structure)
        cell = p.supercell_matrix @ primitive.lattice.matrix
        counts = np.diag(p.supercell_matrix)
        translations = np.stack(np.meshgrid(*(np.arange(c) for c in counts), indexing="ij"), -1).reshape(-1, 3)
        key_frac = (primitive.frac_coords[:, None] + translations[None]).reshape(-1, 3)
        i = rng.integers(p.n_sites, size=20)
        j = rng.integers(p.n_keys, size=20)
        vectors = (key_frac[j] - primitive.frac_coords[i]) @ primitive.lattice.matrix
        np.testing.assert_allclose(p.distances[i, j], _brute_force_distances(cell, vectors), atol=1e-4)
        # and pymatgen agrees on the whole matrix
        to_cell = primitive.lattice.matrix @ np.linalg.inv(cell)
        expected = Lattice(cell).get_all_distances(primitive.frac_coords @ to_cell, key_frac @ to_cell)
        np.testing.assert_allclose(p.distances, expected, atol=1e-4)
        assert np.all(p.distances[np.arange(p.n_sites), p.self_key] == 0)


def test_minimum_image_of_a_very_skewed_lattice():
    lattice = np.array([[4.0, 0, 0], [3.9, 1.0, 0], [3.8, 0.5, 1.2]])
    vectors = np.random.default_rng(2).normal(scale=3, size=(50, 3))
    np.testing.assert_allclose(minimum_image_distances(lattice, vectors), _brute_force_distances(lattice, vectors))


def test_key_to_site_mapping_matches_pymatgen_supercell(rocksalt, mp_cs419):
    """Each key's species and distance agree with pymatgen's own supercell, even when
    pymatgen reorders sites (conventional NaCl lists Na and Cl interleaved)."""
    reordered = Structure(rocksalt.lattice, rocksalt.species[::-1], rocksalt.frac_coords[::-1])
    for structure in [rocksalt, reordered, mp_cs419[0][0], mp_cs419[0][7]]:
        primitive, _ = point_set_cell(structure)
        p = build_point_set(structure)
        assert p.atomic_numbers.tolist() == [site.specie.Z for site in primitive]
        supercell = primitive.copy()
        supercell.make_supercell(p.supercell_matrix)
        sup_z = np.array([site.specie.Z for site in supercell])
        dmat = supercell.distance_matrix
        for i in range(p.n_sites):
            # the supercell site sitting on query i
            at_i = np.argmin(
                supercell.lattice.get_all_distances(
                    supercell.lattice.get_fractional_coords(primitive[i].coords)[None], supercell.frac_coords
                )[0]
            )
            ours = sorted(zip(np.round(p.distances[i].astype(float), 3), p.atomic_numbers[p.key_site]))
            theirs = sorted(zip(np.round(dmat[at_i], 3), sup_z))
            assert ours == theirs


# ---------------------------------------------------------------- features


def test_site_features_are_table_rows(rocksalt):
    p = build_point_set(rocksalt)
    assert sorted(p.atomic_numbers.tolist()) == [11, 17]
    np.testing.assert_allclose(p.site_features, site_property_table()[p.atomic_numbers], rtol=1e-6)
    assert p.site_features.dtype == np.float32 and p.distances.dtype == np.float32


def test_oxidation_column_is_optional(rocksalt):
    config = PointSetConfig(oxidation=True)
    plain = build_point_set(rocksalt, config)
    assert plain.site_features.shape == (2, 9) and np.all(plain.site_features[:, 8] == 0)
    decorated = rocksalt.copy()
    decorated.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    p = build_point_set(decorated, config)
    charges = dict(zip(p.atomic_numbers.tolist(), p.site_features[:, 8].tolist()))
    assert charges == {11: 1.0, 17: -1.0}
    assert build_point_set(decorated).site_features.shape == (2, 8)


# ---------------------------------------------------------------- bad input


def _bad_inputs():
    cubic = Lattice.cubic(4.0)
    a, b = np.array([4.0, 0, 0]), np.array([0.3, 4.0, 0])
    return {
        "expected a pymatgen Structure": Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]),
        "empty structure": Structure(cubic, [], []),
        "disordered": Structure(cubic, [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]),
        "NaN": Structure(cubic, ["Fe", "Fe"], [[0, 0, 0], [np.nan, 0.5, 0.5]]),
        "overlapping atoms": Structure(cubic, ["Fe", "O"], [[0, 0, 0], [0.01, 0, 0]]),
        "no feature data": Structure(cubic, ["Am"], [[0, 0, 0]]),
        "not periodic in all three directions": Structure(
            Lattice(cubic.matrix, pbc=(True, True, False)), ["Fe"], [[0, 0, 0]]
        ),
        "near-singular lattice": Structure(Lattice([a, b, a + b + 1e-7]), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "longer than 1000 A": Structure(Lattice.cubic(1e20), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "fractional coordinate of 1e\\+20": Structure(cubic, ["Fe", "O"], [[0, 0, 0], [0.5, 1e20, 0.5]]),
        "4000 sites in the input cell, more than max_sites=256": Structure(
            Lattice.cubic(36.1), ["Cu"] * 4000, np.random.default_rng(0).random((4000, 3))
        ),
    }


@pytest.mark.parametrize("reason", list(_bad_inputs()))
def test_bad_input_raises_clear_error_naming_index(reason, perovskite):
    bad = _bad_inputs()[reason]
    with pytest.raises(StructureError, match=reason) as info:
        build_point_sets([perovskite, perovskite, bad])
    assert info.value.index == 2
    assert str(info.value).startswith("structure 2: ")


def test_not_a_structure_at_all(perovskite):
    with pytest.raises(StructureError, match="structure 1: expected a pymatgen Structure, got dict"):
        build_point_sets([perovskite, perovskite.as_dict()])
    _, errors = build_point_sets(
        [perovskite, np.float64(5.0), np.array(5.0), np.array(None, dtype=object), perovskite], return_errors=True
    )
    assert errors == [
        None,
        "structure 1: expected a pymatgen Structure, got float64",
        "structure 2: expected a pymatgen Structure, got ndarray",
        "structure 3: expected a pymatgen Structure, got ndarray",
        None,
    ]


def test_checks_come_before_the_expensive_pymatgen_calls(monkeypatch, perovskite):
    """A 4,000-site cell and a near-singular one (whose Niggli reduction runs for hours) fail at once."""
    bad = _bad_inputs()

    def never(*args, **kwargs):
        raise AssertionError("the primitive-cell search must not start")

    monkeypatch.setattr(Structure, "get_primitive_structure", never)
    start = time.perf_counter()
    _, errors = build_point_sets(
        [bad["near-singular lattice"], bad["4000 sites in the input cell, more than max_sites=256"]], return_errors=True
    )
    assert time.perf_counter() - start < 1.0
    assert "near-singular" in errors[0] and "4000 sites" in errors[1]


@pytest.mark.parametrize("exception", [KeyboardInterrupt, TimeoutError, TypeError, MemoryError])
def test_interrupts_timeouts_and_programming_errors_propagate(monkeypatch, perovskite, exception):
    def interrupted(*args, **kwargs):
        raise exception("raised inside pymatgen")

    monkeypatch.setattr(Structure, "get_primitive_structure", interrupted)
    with pytest.raises(exception, match="raised inside pymatgen"):
        build_point_sets([perovskite], ignore_errors=True)


def test_pymatgen_failures_on_a_structure_become_structure_errors(monkeypatch, perovskite, rocksalt):
    def cannot(self, *args, **kwargs):
        raise ValueError("can't find niggli")

    monkeypatch.setattr(Structure, "get_primitive_structure", cannot)
    point_sets, errors = build_point_sets([perovskite, rocksalt], return_errors=True)
    assert point_sets == [None, None]
    assert errors[1] == "structure 1: primitive-cell search failed: ValueError: can't find niggli"


def test_too_many_unique_sites(perovskite):
    with pytest.raises(StructureError, match=r"structure 0: 5 sites in the input cell, more than max_sites=4"):
        build_point_sets([perovskite], PointSetConfig(max_sites=4))


def test_tiny_cell_overlaps_its_own_image():
    tiny = Structure(Lattice.cubic(0.3), ["H"], [[0, 0, 0]])
    with pytest.raises(StructureError, match="overlapping atoms"):
        build_point_set(tiny)


def test_ignore_errors_keeps_order_and_length(perovskite, rocksalt):
    bad = _bad_inputs()
    inputs = [perovskite, bad["disordered"], rocksalt, None, bad["overlapping atoms"]]
    out = build_point_sets(inputs, ignore_errors=True)
    assert len(out) == 5
    assert [p is None for p in out] == [False, True, False, True, True]
    assert out[0].n_sites == 5 and out[2].n_sites == 2
    out, errors = build_point_sets(inputs, return_errors=True)
    assert errors[0] is None and errors[2] is None
    assert errors[1].startswith("structure 1: disordered")
    assert errors[3] == "structure 3: expected a pymatgen Structure, got NoneType"
    assert "overlapping atoms" in errors[4]


def test_accepts_list_series_arrays_and_one_tuples(perovskite, rocksalt):
    expected = [p.distances for p in build_point_sets([perovskite, rocksalt])]
    column = np.empty((2, 1), dtype=object)
    column[0, 0], column[1, 0] = perovskite, rocksalt
    for X in (
        pd.Series([perovskite, rocksalt]),
        pd.DataFrame({"structure": [perovskite, rocksalt]}),
        np.array([perovskite, rocksalt, None], dtype=object)[:2],
        column,
        [(perovskite,), (rocksalt,)],
        (perovskite, rocksalt),
    ):
        got = [p.distances for p in build_point_sets(X)]
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    with pytest.raises(TypeError):
        build_point_sets(perovskite)


def test_every_structure_of_a_real_set_featurises(phonons):
    structures, _ = phonons
    point_sets = build_point_sets(structures[::4])
    assert all(p is not None for p in point_sets)
    assert max(p.n_keys for p in point_sets if p.n_sites <= 25) <= 50


def test_parallel_build_keeps_order_results_and_error_positions(perovskite, rocksalt):
    bad = _bad_inputs()
    inputs = [perovskite, bad["disordered"], rocksalt, None] * 3
    serial, serial_errors = build_point_sets(inputs, return_errors=True)
    parallel, parallel_errors = build_point_sets(inputs, return_errors=True, n_jobs=2)
    assert parallel_errors == serial_errors and parallel_errors[9].startswith("structure 9: ")
    assert [p is None for p in parallel] == [p is None for p in serial]
    assert all(np.array_equal(a.distances, b.distances) for a, b in zip(parallel, serial) if a is not None)
    with pytest.raises(StructureError, match="structure 1: disordered") as info:
        build_point_sets(inputs, n_jobs=2)
    assert info.value.index == 1
