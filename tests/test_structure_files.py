"""Reading CIFs: numbers pymatgen would take silently or misreport are refused with the problem named."""

from __future__ import annotations

import pytest

from dim_sklearn.structure_files import read_cif

_CIF = """data_rocksalt
_symmetry_space_group_name_H-M '{group}'
{cell}
loop_
 _symmetry_equiv_pos_as_xyz
 {operations}
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
{sites}
"""
_SITES = " Na Na1 0 0 0 1\n Cl Cl1 0.5 0.5 0.5 1"
_FCC = "'x, y, z' 'x+1/2, y+1/2, z' 'x+1/2, y, z+1/2' 'x, y+1/2, z+1/2'".replace("' '", "'\n '")


def _cell(a="5.64", b="5.64", c="5.64", alpha="90", beta="90", gamma="90") -> str:
    names = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
    return "\n".join(f"_cell_{name} {value}" for name, value in zip(names, (a, b, c, alpha, beta, gamma)) if value)


def _cif(sites=_SITES, cell=None, fcc=False) -> str:
    return _CIF.format(
        group="F 1" if fcc else "P 1",
        cell=_cell() if cell is None else cell,
        operations=_FCC if fcc else "'x, y, z'",
        sites=sites,
    )


MISLEADING = ("Occupancy", "tolerance", "ZeroDivision", "Overflow", "cannot convert", "reshape", "KeyError", "Singular")
"""Fragments of what pymatgen says about these files, none of which names their problem."""


@pytest.mark.parametrize(
    "text, reason",
    [
        # pymatgen wrapped these coordinates into the cell without a word, or (with symmetry) merged the moved atom
        # with its images and reported "Occupancy 2.0 exceeded tolerance"
        (_cif(" Na Na1 1e308 0 0 1\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_fract_x of site Na1 is 1e308, not a finite"),
        (_cif(" Na Na1 1e308 0 0 1\n Cl Cl1 0.5 0.5 0.5 1", fcc=True), "_atom_site_fract_x of site Na1 is 1e308"),
        (_cif(" Na Na1 100000.25 0 0 1\n Cl Cl1 0.5 0.5 0.5 1"), "is 100000.25, not a finite number within +-1000"),
        (_cif(" Na Na1 1e400 0 0 1\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_fract_x of site Na1 is 1e400"),
        (_cif(" Na Na1 0 nan 0 1\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_fract_y of site Na1 is nan"),
        (_cif(" Na Na1 0 0 ? 1\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_fract_z of site Na1 is '?', not a number"),
        # pymatgen took a negative length as positive, 200 degrees as 160, and read an infinite cell
        (_cif(cell=_cell(a="-5.64")), "_cell_length_a is -5.64, not a length in (0, 1000] A"),
        (_cif(cell=_cell(b="1e308")), "_cell_length_b is 1e308, not a length"),
        (_cif(cell=_cell(c="0")), "_cell_length_c is 0, not a length"),
        (_cif(cell=_cell(alpha="200")), "_cell_angle_alpha is 200, not an angle between 0 and 180 degrees"),
        (_cif(cell=_cell(gamma="nan")), "_cell_angle_gamma is nan, not an angle"),
        (_cif(cell=_cell(alpha="45", beta="45")), "the cell angles 45, 45, 90 give a flat cell"),
        (_cif(cell=_cell(alpha="", beta="", gamma="")), "an incomplete cell: no _cell_angle_alpha"),
        (_cif(cell=""), "an incomplete cell: no _cell_length_a"),
        (_cif(cell=_cell(a="0.005", b="0.005", c="0.005")), "a cell less than 0.01 A thick"),
        # pymatgen dropped a site whose occupancy was NaN or negative
        (_cif(" Na Na1 0 0 0 nan\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_occupancy of site Na1 is nan, not an occupancy"),
        (_cif(" Na Na1 0 0 0 -1\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_occupancy of site Na1 is -1"),
        (_cif(" Na Na1 0 0 0 2\n Cl Cl1 0.5 0.5 0.5 1"), "_atom_site_occupancy of site Na1 is 2, not an occupancy"),
        # coincident atoms: their occupancies add up after merging
        (_cif(" Na Na1 0 0 0 1\n Na Na2 0 0 0 1\n Cl Cl1 0.5 0.5 0.5 1"), "atom sites coincide"),
        (_cif(" Na Na1 0 0 0 1\n Cl Cl1 0.5 0.5 0 1", fcc=True), "atom sites coincide"),
        # no structure at all
        (_cif(sites=""), "a loop_ lists column names but no values"),
        (_cif().split("loop_")[0], "no atom sites"),
        (_cif().replace("_atom_site_fract", "_atom_site_Cartn"), "only as Cartesian coordinates"),
        (_cif().replace(" _atom_site_label\n", "").replace(" Na1", "").replace(" Cl1", ""), "without _atom_site_label"),
        ("this is not a crystal\n", "no atom sites"),
    ],
)
def test_unusable_numbers_and_missing_parts_are_named(tmp_path, text, reason):
    path = tmp_path / "bad.cif"
    path.write_text(text)
    structure, found = read_cif(path)
    assert structure is None and found.startswith("unreadable CIF (") and reason in found, found
    assert not any(fragment in found for fragment in MISLEADING), found


@pytest.mark.parametrize(
    "text, n_sites",
    [
        (_cif(), 2),
        (_cif(" Na Na1 0.0(1) 0 0 1.00(2)\n Cl Cl1 0.5 0.5 -0.5 1"), 2),  # uncertainties; a coordinate outside [0, 1)
        (_cif(" Na Na1 0 0 0 1\n Cl Cl1 0.5 0.5 0.5 1", fcc=True), 8),
        (_cif(cell="_cell_length_a 5.64\n_symmetry_cell_setting cubic"), 2),  # the crystal system gives the rest
    ],
)
def test_usable_cifs_still_read(tmp_path, text, n_sites):
    path = tmp_path / "good.cif"
    path.write_text(text)
    structure, reason = read_cif(path)
    assert reason is None and len(structure) == n_sites
