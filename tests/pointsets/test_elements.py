import numpy as np
import pytest

from dim_sklearn.pointsets.elements import MAX_Z, SITE_PROPERTIES, filled_values, site_property_table


def test_known_values_are_scaled_magpie_properties():
    table = site_property_table()
    iron = dict(zip(SITE_PROPERTIES, table[26]))
    assert iron == pytest.approx(
        {
            "Number": 2.6,
            "AtomicWeight": 5.5845,
            "Row": 4,
            "Column": 8,
            "FirstIonizationEnergy": 7.9024,
            "Electronegativity": 18.3,
            "AtomicRadius": 14.0,
            "Density": 7.874,
        }
    )
    oxygen = dict(zip(SITE_PROPERTIES, table[8]))
    assert oxygen["Electronegativity"] == pytest.approx(34.4)
    assert oxygen["Column"] == 16 and oxygen["Row"] == 2
    assert table[1, 0] == pytest.approx(0.1)  # hydrogen, Number x 0.1


def test_every_element_up_to_plutonium_is_finite():
    table = site_property_table()
    assert table.shape == (MAX_Z + 1, 8)
    assert np.isfinite(table[1:]).all()
    assert np.isnan(table[0]).all()
    assert not table.flags.writeable


def test_gaps_are_filled_from_the_documented_fallbacks():
    table = site_property_table()
    filled = filled_values()
    en, radius, density = (SITE_PROPERTIES.index(p) for p in ("Electronegativity", "AtomicRadius", "Density"))
    assert filled[("He", "Electronegativity")] == "Magpie AllenElectronegativity"
    assert table[2, en] == pytest.approx(41.6)
    assert filled[("Rn", "Electronegativity")] == "pymatgen"
    assert filled[("Kr", "AtomicRadius")] == "pymatgen"
    assert filled[("At", "AtomicRadius")] == "group neighbour I"
    assert table[85, radius] == table[53, radius]
    assert filled[("Fr", "Density")] == "group neighbour Cs"
    assert table[87, density] == table[55, density]
    # Nothing else was touched: every other value is Magpie's own.
    assert len(filled) == 14
