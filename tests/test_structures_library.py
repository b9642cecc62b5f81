"""Structure library: provenance, lookup and clear errors on bad input."""

import pytest

from alloyflow.structures import StructureError, StructureLibrary, parse_system


def test_bundled_systems_have_references_and_provenance():
    lib = StructureLibrary()
    li_in = {p.name: p for p in lib.phases("Li-In")}
    assert {"Li", "In", "LiIn", "Li3In2"} <= set(li_in)
    assert li_in["Li"].status == "element"
    assert li_in["LiIn3"].status == "hypothetical"
    assert "NaTl" in li_in["LiIn"].source
    li_sn = {p.name for p in lib.phases("Li-Sn")}
    assert {"Li2Sn5", "LiSn", "LiSn_beta", "Li13Sn5", "Li17Sn4"} <= li_sn
    assert not any("In" in p for p in li_sn)


def test_filter_by_status():
    lib = StructureLibrary()
    names = {p.name for p in lib.phases("Li-In", statuses=["element", "verified", "prototype"])}
    assert "LiIn3" not in names and "LiIn" in names


def test_get_by_formula_prefers_reported_phase():
    lib = StructureLibrary()
    assert lib.get("LiSn").name == "LiSn"
    assert lib.get("LiSn_beta").name == "LiSn_beta"
    assert lib.load("Li13Sn5").composition.reduced_formula == "Li13Sn5"


@pytest.mark.parametrize("system,message", [("Li-Xx", "unknown element 'Xx'"), ("Li", "at least two elements")])
def test_bad_system(system, message):
    with pytest.raises(StructureError, match=message):
        parse_system(system)


def test_formula_outside_system_names_the_problem():
    lib = StructureLibrary()
    with pytest.raises(StructureError, match="outside the system"):
        lib.get("LiIn", system="Li-Sn")
    with pytest.raises(StructureError, match="no phase 'Li9Xe'"):
        lib.get("Li9Xe")


def test_malformed_cif_names_the_file(tmp_path):
    bad = tmp_path / "Broken.cif"
    bad.write_text("data_broken\n_cell_length_a 3.0\nloop_\n_atom_site_label\nthis is not a cif\n")
    with pytest.raises(StructureError, match="Broken.cif"):
        StructureLibrary(user_dirs=[tmp_path])


def test_empty_folder(tmp_path):
    with pytest.raises(StructureError, match="holds no CIF"):
        StructureLibrary(user_dirs=[tmp_path])


def test_user_folder_adds_and_overrides(tmp_path):
    lib = StructureLibrary()
    s = lib.load("LiIn")
    s.scale_lattice(s.volume * 1.05)
    s.to(filename=str(tmp_path / "LiIn_B2guess.cif"))
    lib.add_folder(tmp_path)
    phase = lib.get("LiIn_B2guess")
    assert phase.status == "user" and phase.formula == "LiIn"
    assert "LiIn_B2guess" in {p.name for p in lib.phases("Li-In")}


def test_missing_elemental_reference(tmp_path):
    lib = StructureLibrary(include_bundled=False)
    StructureLibrary().load("LiIn").to(filename=str(tmp_path / "LiIn.cif"))
    lib.add_folder(tmp_path)
    with pytest.raises(StructureError, match="lacks an elemental reference"):
        lib.phases("Li-In")
