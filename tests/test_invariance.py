"""A crystal's point set, vector and prediction do not depend on the cell it is written in."""

from __future__ import annotations

import numpy as np
import pytest
from crystals import six_crystals
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dim_sklearn import DeepInfoMaxFeaturizer, PointSetConfig, SiteNetRegressor, build_point_set, list_datasets
from dim_sklearn.pointsets import point_set_cell

TOLERANCE = 1e-5


def equivalent_cells(structure: Structure, seed: int = 0, conventional: bool = True) -> dict[str, Structure]:
    """The same crystal written in other cells: permuted axes, a shifted origin, another basis, a larger cell.

    The conventional cell comes from spglib's symmetrised structure: the same crystal only for an exactly
    symmetric one (the hand-built crystals), so ``conventional=False`` leaves it out for real structures.
    """
    rng = np.random.default_rng(seed)
    lattice, frac, species = structure.lattice.matrix, structure.frac_coords, structure.species
    change = np.array([[2, 1, 1], [1, 1, 0], [0, 0, 1]])  # determinant 1
    bigger = structure.copy()
    bigger.make_supercell([[1, 1, 0], [-1, 1, 0], [0, 0, 1]])
    cells = {
        "cyclic axes": Structure(lattice[[1, 2, 0]], species, frac[:, [1, 2, 0]]),
        "swapped axes": Structure(lattice[[1, 0, 2]] * [[1], [1], [-1]], species, frac[:, [1, 0, 2]] * [1, 1, -1]),
        "shifted origin": Structure(lattice, species, frac + rng.random(3)),
        "other basis": Structure(change @ lattice, species, frac @ np.linalg.inv(change)),
        "doubled cell": bigger,
        "reordered sites": Structure(lattice, species[::-1], frac[::-1]),
        "pymatgen's primitive cell": structure.get_primitive_structure(),
    }
    if conventional:
        cells["conventional cell"] = SpacegroupAnalyzer(structure).get_conventional_standard_structure()
    return cells


def pair_distances(structure: Structure, config: PointSetConfig | None = None) -> np.ndarray:
    """A point set up to the order of its sites and keys: sorted distances per (query, key) element pair."""
    p = build_point_set(structure, config)
    pair = p.atomic_numbers[:, None] * 1000 + p.atomic_numbers[p.key_site][None, :]
    order = np.lexsort((p.distances.ravel(), pair.ravel()))
    return np.stack([pair.ravel()[order], p.distances.ravel()[order]])


def pseudo_tetragonal() -> Structure:
    """Four atoms in a square-based cell whose atoms break the square's symmetry; the supercell is 4 x 3 x 1."""
    return Structure(
        Lattice.tetragonal(4.0, 30.0),
        ["Ga", "As", "As", "Ga"],
        [[0, 0, 0], [0.3, 0, 0.1], [0.5, 0.5, 0.2], [0.1, 0.6, 0.35]],
    )


def triclinic() -> Structure:
    return Structure(
        Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 104.0),
        ["Li", "Fe", "P", "O"],
        [[0.1, 0.2, 0.3], [0.6, 0.1, 0.8], [0.35, 0.65, 0.15], [0.8, 0.45, 0.55]],
    )


def hand_built() -> list[Structure]:
    conventional_rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    return [pseudo_tetragonal(), triclinic(), conventional_rocksalt, *six_crystals()[3:]]


@pytest.fixture(scope="module")
def shipped():
    return DeepInfoMaxFeaturizer.from_pretrained()


def test_the_pseudo_tetragonal_crystal_has_a_supercell_that_a_swap_of_axes_would_move():
    _, matrix = point_set_cell(pseudo_tetragonal())
    assert sorted(np.diag(matrix).tolist()) == [1, 3, 4]


@pytest.mark.parametrize("structure", hand_built(), ids=lambda s: s.composition.reduced_formula)
def test_equivalent_cells_give_the_same_point_set(structure):
    expected = pair_distances(structure)
    for name, cell in equivalent_cells(structure).items():
        found = pair_distances(cell)
        assert found.shape == expected.shape, name
        np.testing.assert_array_equal(found[0], expected[0], err_msg=name)
        np.testing.assert_allclose(found[1], expected[1], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("max_atoms", [8, 20, 100])
def test_the_supercell_size_does_not_break_the_invariance(max_atoms):
    config = PointSetConfig(max_atoms=max_atoms)
    for structure in (pseudo_tetragonal(), triclinic()):
        expected = pair_distances(structure, config)
        for name, cell in equivalent_cells(structure).items():
            np.testing.assert_allclose(pair_distances(cell, config)[1], expected[1], atol=1e-5, err_msg=name)


def test_the_cell_of_the_point_set_is_primitive_and_spans_the_same_crystal():
    structure = hand_built()[2]  # conventional rock salt, 8 sites
    primitive, matrix = point_set_cell(structure)
    assert len(primitive) == 2 and abs(primitive.volume - structure.volume / 4) < 1e-6
    assert round(abs(np.linalg.det(matrix))) == build_point_set(structure).n_images
    assert primitive.matches(structure)


def test_equivalent_cells_give_the_same_vector_and_prediction(shipped):
    structures = hand_built()
    variants = [cell for s in structures for cell in equivalent_cells(s).values()]
    expected = np.repeat(shipped.transform(structures), len(variants) // len(structures), axis=0)
    assert np.abs(shipped.transform(variants) - expected).max() < TOLERANCE

    regressor = SiteNetRegressor(max_epochs=2, batch_size=4, random_state=0, verbose=0)
    regressor.fit(structures, np.arange(len(structures), dtype=float))
    predicted = np.repeat(regressor.predict(structures), len(variants) // len(structures))
    assert np.abs(regressor.predict(variants) - predicted).max() < TOLERANCE


def test_real_structures_of_every_data_set_give_one_vector_per_crystal(data_home, shipped):
    from dim_sklearn import load_dataset

    names = [name for name, row in list_datasets(data_home).iterrows() if row["available"]]
    assert len(names) >= 5
    worst = {}
    for name in names:
        structures = [s for s in load_dataset(name, data_home)[0][:300:20] if len(s) <= 64]
        expected = shipped.transform(structures)
        variants = [equivalent_cells(s, seed=k, conventional=False) for k, s in enumerate(structures)]
        for kind in variants[0]:
            found = shipped.transform([v[kind] for v in variants])
            worst[name, kind] = float(np.abs(found - expected).max())
    assert max(worst.values()) < TOLERANCE, {k: v for k, v in worst.items() if v >= TOLERANCE}
