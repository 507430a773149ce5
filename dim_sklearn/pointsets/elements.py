"""Per-element site features: eight scaled Magpie properties, complete up to Pu.

The Site-Net point set describes each site by eight Magpie elemental properties,
scaled so their magnitudes are comparable (docs/method.md, section 1):

=======================  =======
property                 scale
=======================  =======
Number                   0.1
AtomicWeight             0.1
Row                      1
Column                   1
FirstIonizationEnergy    1  (eV)
Electronegativity        10 (Pauling)
AtomicRadius             10 (Angstrom)
Density                  0.001 (kg/m^3)
=======================  =======

Magpie lacks a few values for elements up to Pu. Rather than dropping those
crystals, every gap is filled, in this order, from the first source that has it:

1. Magpie itself (as shipped with matminer, without its mean imputation);
2. pymatgen's element data: Pauling ``X`` for Electronegativity, ``atomic_radius``
   then ``atomic_radius_calculated`` for AtomicRadius, the first ionisation energy,
   ``density_of_solid`` for Density;
3. Electronegativity only: Magpie's Allen electronegativity (He, Ne, Ar);
4. the value of the nearest lighter element of the same group that has one
   (At takes iodine's radius and density, Fr takes caesium's).

``filled_values`` lists every value that did not come from Magpie.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np

SITE_PROPERTIES: tuple[str, ...] = (
    "Number",
    "AtomicWeight",
    "Row",
    "Column",
    "FirstIonizationEnergy",
    "Electronegativity",
    "AtomicRadius",
    "Density",
)
SITE_PROPERTY_SCALES: tuple[float, ...] = (0.1, 0.1, 1.0, 1.0, 1.0, 10.0, 10.0, 0.001)
MAX_Z = 94  # Pu


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pymatgen_value(element, prop: str) -> float | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if prop == "Electronegativity":
            candidates = [element.X]
        elif prop == "AtomicRadius":
            candidates = [element.atomic_radius, element.atomic_radius_calculated]
        elif prop == "FirstIonizationEnergy":
            candidates = [element.ionization_energy]
        elif prop == "Density":
            candidates = [element.density_of_solid]
        else:
            candidates = []
    for value in candidates:
        if not _missing(value):
            return float(value)
    return None


@lru_cache(maxsize=1)
def _raw_table() -> tuple[np.ndarray, dict[tuple[str, str], str]]:
    from matminer.utils.data import MagpieData
    from pymatgen.core.periodic_table import Element

    magpie = MagpieData(impute_nan=False).all_elemental_props
    table = np.full((MAX_Z + 1, len(SITE_PROPERTIES)), np.nan)
    sources: dict[tuple[str, str], str] = {}
    elements = [Element.from_Z(z) for z in range(1, MAX_Z + 1)]
    for z, element in enumerate(elements, start=1):
        for k, prop in enumerate(SITE_PROPERTIES):
            value = magpie[prop].get(element.symbol)
            if _missing(value):
                value = _pymatgen_value(element, prop)
                if value is not None:
                    sources[(element.symbol, prop)] = "pymatgen"
            if value is None and prop == "Electronegativity":
                value = magpie["AllenElectronegativity"].get(element.symbol)
                if not _missing(value):
                    sources[(element.symbol, prop)] = "Magpie AllenElectronegativity"
            if not _missing(value):
                table[z, k] = float(value)
    # Last rule: the nearest lighter element of the same group with a value.
    groups = {z: elements[z - 1].group for z in range(1, MAX_Z + 1)}
    for z in range(1, MAX_Z + 1):
        for k, prop in enumerate(SITE_PROPERTIES):
            if not np.isnan(table[z, k]):
                continue
            donors = [d for d in range(z - 1, 0, -1) if groups[d] == groups[z] and not np.isnan(table[d, k])]
            if not donors:
                raise RuntimeError(f"no value or fallback for {prop} of Z={z}")
            table[z, k] = table[donors[0], k]
            sources[(elements[z - 1].symbol, prop)] = f"group neighbour {elements[donors[0] - 1].symbol}"
    return table, sources


def site_property_table() -> np.ndarray:
    """Scaled site features indexed by atomic number.

    Returns
    -------
    ndarray of shape (MAX_Z + 1, 8)
        Row ``Z`` holds the scaled properties of element ``Z`` (row 0 is NaN).
        The array is read-only and shared.
    """
    return _scaled_table()


@lru_cache(maxsize=1)
def _scaled_table() -> np.ndarray:
    table = _raw_table()[0] * np.asarray(SITE_PROPERTY_SCALES)
    table.setflags(write=False)
    return table


def filled_values() -> dict[tuple[str, str], str]:
    """Which (element symbol, property) values were not in Magpie, and their source."""
    return dict(_raw_table()[1])
