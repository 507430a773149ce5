"""Hand-built crystals for the tests that need a few varied structures and no data folder."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure


def six_crystals() -> list[Structure]:
    """Rock salt at three lattice constants, bcc Fe, wurtzite-like ZnO and cubic SrTiO3 (2, 2, 2, 1, 2, 5 sites)."""
    return [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (3.9, 4.4, 5.0)] + [
        Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]]),
        Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]),
        Structure(
            Lattice.cubic(3.905),
            ["Sr", "Ti", "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        ),
    ]
