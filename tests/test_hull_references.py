"""Elemental references: each element's own phase (β-Sn ``Sn``) by default, another if chosen.

Hand-made Li–Sn entries (formation energies in eV/atom against β-Sn and bcc Li):
    Sn (β) 0, Sn_alpha -0.05, Li2Sn5 (x = 2/7) -0.13, LiSn (x = 1/2) -0.20, Li 0.
Against β (the default): the Sn–LiSn line at x = 2/7 is -0.20 * 4/7 = -0.1143, so Li2Sn5 is on
the hull. Against α (``Sn=lowest`` or ``Sn=Sn_alpha``): Li2Sn5 is -0.13 + 5/7 * 0.05 = -0.0943 and LiSn
-0.175; the line at 2/7 is -0.175 * 4/7 = -0.1, so Li2Sn5 is 0.0057 eV/atom above it.
"""

from __future__ import annotations

import argparse

import pytest
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from alloyflow.analysis.hull import HullResult, build_hull, reference_entries
from alloyflow.analysis.outputs import format_hull_table
from alloyflow.analysis.report import hull_section
from alloyflow.analysis.voltage import voltage_profile
from alloyflow.commands.parser import element_reference, reference_map
from alloyflow.structures import StructureLibrary
from alloyflow.workflows.flows.hull import check_references, hull_flow_for

MU = {"Li": -1.9, "Sn": -3.8}
CALC = {"name": "hand", "model": "hand-made", "version": "0", "kind": "test", "label": "hand-made (TEST ONLY)"}
LI2SN5_ABOVE_ALPHA_HULL = -0.13 + 5 / 7 * 0.05 + 0.175 * 4 / 7


def entry(formula, e_form, name=None):
    comp = Composition(formula)
    energy = sum(MU[str(el)] * n for el, n in comp.items()) + e_form * comp.num_atoms
    return ComputedEntry(comp, energy, entry_id=name or formula,
                         data={"phase": name or formula, "calculator": CALC, "converged": True})


def li_sn():
    return [entry("Sn", 0.0), entry("Sn", -0.05, "Sn_alpha"), entry("Li2Sn5", -0.13), entry("LiSn", -0.20),
            entry("Li", 0.0)]


@pytest.mark.parametrize("refs, why", [({"Sn": "lowest"}, "lowest Sn entry"), ({"Sn": "Sn_alpha"}, "chosen")])
def test_the_lowest_reference_on_request_and_stated(refs, why):
    hull = build_hull(li_sn(), "Li-Sn", refs)
    assert hull.references == {"Li": "Li", "Sn": "Sn_alpha"}
    assert f"Sn = Sn_alpha ({why})" in hull.reference_note
    li2sn5 = hull.phase("Li2Sn5")
    assert not li2sn5.stable
    assert li2sn5.e_above_hull == pytest.approx(LI2SN5_ABOVE_ALPHA_HULL, abs=1e-9)
    assert not any(p.below_reference for p in hull.phases)


def test_beta_reference_puts_li2sn5_on_the_hull_and_lists_alpha_below_it():
    hull = build_hull(li_sn(), "Li-Sn")
    assert build_hull(li_sn(), "Li-Sn", {"Sn": "Sn"}).phases == hull.phases  # named or by default
    assert hull.references == {"Li": "Li", "Sn": "Sn"}
    assert hull.stable_set == ["Sn", "Li2Sn5", "LiSn", "Li"]
    assert hull.phase("Li2Sn5").formation_energy_per_atom == pytest.approx(-0.13)
    alpha = hull.phase("Sn_alpha")
    assert alpha.below_reference and not alpha.stable
    assert alpha.formation_energy_per_atom == pytest.approx(-0.05)
    assert alpha.e_above_hull == pytest.approx(-0.05)
    assert "Sn = Sn (the element's own phase; Sn_alpha 50.0 meV/atom lower, left off the hull)" in hull.reference_note
    table = format_hull_table(hull)
    assert "below ref" in table and hull.reference_note in table
    section = hull_section("Li-Sn", hull, None)
    assert "below reference" in section
    assert "Elemental references: Li = Li (the element's own phase), Sn = Sn (the element's own phase" in section


def test_voltage_and_stored_hull_keep_the_chosen_reference():
    hull = build_hull(li_sn(), "Li-Sn")
    stored = HullResult.model_validate_json(hull.model_dump_json())
    assert stored.phase("Sn_alpha").below_reference and stored.references == hull.references
    from_hull = voltage_profile(stored)
    refs = reference_entries(li_sn(), "Li-Sn")
    assert [e.data["phase"] for e in refs.below] == ["Sn_alpha"] and refs.basis == {"Li": "own phase", "Sn": "own phase"}
    for source in (refs.kept, li_sn()):  # plain entries get the hull's default references
        assert [s.phases for s in voltage_profile(source).steps] == [s.phases for s in from_hull.steps]
    assert from_hull.steps[0].phases == ["Sn", "Li2Sn5"]
    alpha = build_hull(li_sn(), "Li-Sn", {"Sn": "lowest"})
    assert voltage_profile(alpha).steps[0].phases == ["Sn", "LiSn"]  # a stored alpha hull keeps its reference
    assert voltage_profile(li_sn(), references={"Sn": "lowest"}).steps[0].phases == ["Sn", "LiSn"]


def test_the_hull_document_voltage_has_the_hull_references(monkeypatch):
    """Before: with ``Sn=lowest`` the hull took α-Sn and its voltage curve β-Sn (the entries' default)."""
    from types import SimpleNamespace

    from alloyflow.workflows.flows import hull as hull_flow

    monkeypatch.setattr(hull_flow, "entries_from_documents", lambda docs: li_sn())
    docs = [SimpleNamespace(input_hash="h")]
    for refs, first in ((None, "Li2Sn5"), ({"Sn": "lowest"}, "LiSn")):
        doc = hull_flow.hull_from_documents("Li-Sn", docs, refs)
        assert doc.voltage.steps[0].phases == ["Sn", first]
        assert (first == "Li2Sn5") == ("Li2Sn5" in doc.hull.stable_set)


def test_naming_the_lowest_is_the_lowest_and_an_element_without_its_own_phase_takes_its_lowest():
    lowest, named = build_hull(li_sn(), "Li-Sn", {"Sn": "lowest"}), build_hull(li_sn(), "Li-Sn", {"Sn": "Sn_alpha"})
    assert [p.model_dump() for p in lowest.phases] == [p.model_dump() for p in named.phases]
    renamed = [entry("Sn", 0.0, "Sn_beta"), *li_sn()[1:]]
    hull = build_hull(renamed, "Li-Sn")
    assert hull.references["Sn"] == "Sn_alpha" and "Sn = Sn_alpha (lowest Sn entry)" in hull.reference_note


@pytest.mark.parametrize("refs, message", [
    ({"In": "In"}, "reference given for In, which is not an element of Li-Sn"),
    ({"Sn": "Sn_grey"}, "no Sn entry named 'Sn_grey' to take as the Sn reference; Sn entries: Sn, Sn_alpha"),
])
def test_bad_references_are_refused_in_one_line(refs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        build_hull(li_sn(), "Li-Sn", refs)


def test_command_line_references_are_checked_before_any_job():
    assert element_reference("Sn=Sn") == ("Sn", "Sn")
    with pytest.raises(argparse.ArgumentTypeError, match="expected ELEMENT=PHASE"):
        element_reference("Sn")
    assert reference_map([("Sn", "Sn"), ("Sn", "Sn")]) == {"Sn": "Sn"}
    with pytest.raises(ValueError, match="names Sn twice"):
        reference_map([("Sn", "Sn"), ("Sn", "Sn_alpha")])
    library = StructureLibrary()
    check_references({"Sn": "Sn_alpha", "Li": "lowest"}, ["Li-In", "Li-Sn"], library)
    with pytest.raises(ValueError, match=r"^reference Sn=Sn_beta: no Sn phase named 'Sn_beta'; Sn phases: Sn, Sn_alpha \(or lowest\)$"):
        check_references({"Sn": "Sn_beta"}, ["Li-Sn"], library)
    with pytest.raises(ValueError, match="In is not an element of Li-Sn"):
        hull_flow_for("Li-Sn", "mock", library, references={"In": "In"})


def test_the_hull_document_key_holds_the_references_only_when_given():
    library = StructureLibrary()
    plain = hull_flow_for("Li-Sn", "mock", library, phases=["LiSn"])
    empty = hull_flow_for("Li-Sn", "mock", library, phases=["LiSn"], references={})
    alpha = hull_flow_for("Li-Sn", "mock", library, phases=["LiSn"], references={"Sn": "Sn_alpha"})
    assert plain.output.uuid == empty.output.uuid
    assert alpha.output.uuid != plain.output.uuid
    assert [j.uuid for j in alpha.jobs[:-1]] == [j.uuid for j in plain.jobs[:-1]]  # relaxations are shared


def test_beta_reference_for_real_on_the_default_potential(tmp_path, capsys):
    """``alloyflow hull Li-Sn --calculator sevennet``: α-Sn lies below β and is listed, not used; ``Sn=lowest`` uses it."""
    from alloyflow.cli import main
    from alloyflow.io.hull import read_hull_json

    argv = ["hull", "Li-Sn", "--phases", "LiSn", "--calculator", "sevennet", "--out", str(tmp_path), "--no-progress",
            "--workers", "1"]
    assert main(argv) == 0
    assert "Sn = Sn (the element's own phase; Sn_alpha" in capsys.readouterr().out
    beta = read_hull_json(tmp_path / "Li-Sn" / "hull.json")
    alpha_gap = beta.phase("Sn_alpha").formation_energy_per_atom
    assert beta.phase("Sn_alpha").below_reference and alpha_gap < 0  # SevenNet-0: α-Sn lower, as in PBE
    assert main([*argv, "--reference", "Sn=lowest"]) == 0  # the same relaxations, α-Sn the reference
    assert "relaxations: 0 job(s) computed" in capsys.readouterr().out
    alpha = read_hull_json(tmp_path / "Li-Sn" / "hull.json")
    assert alpha.references["Sn"] == "Sn_alpha"
    lisn_b, lisn_a = beta.phase("LiSn"), alpha.phase("LiSn")
    # LiSn is half Sn: its formation energy against α is higher by half the α-β gap
    assert lisn_a.formation_energy_per_atom - lisn_b.formation_energy_per_atom == pytest.approx(-alpha_gap / 2, abs=1e-9)


def test_the_comparison_with_the_reference_names_a_host_reference_other_than_the_metal():
    from alloyflow.analysis.report import comparison_section

    alpha = comparison_section({"Li-Sn": build_hull(li_sn(), "Li-Sn", {"Sn": "lowest"})}, {"Li-Sn": None}, [], "hand")
    beta = comparison_section({"Li-Sn": build_hull(li_sn(), "Li-Sn")}, {"Li-Sn": None}, [], "hand")
    assert "LiSn -175.0 (Sn reference: Sn_alpha)" in alpha
    assert "LiSn -200.0 |" in beta and "Sn reference" not in beta


@pytest.mark.parametrize("calculator, extra", [("mock", {"references": {"Sn": "lowest"}}),
                                               ("vasp", {"incar": {"ENCUT": 700}, "references": {"Sn": "Sn_alpha"}})])
def test_report_rebuilds_a_hull_submission_with_its_references_and_incar(calculator, extra):
    """``alloyflow report`` names the missing jobs of a submission from the flow rebuilt with its recorded settings."""
    from alloyflow.commands.report import _rebuild
    from alloyflow.commands.submit import hull_flow, incar_relax_maker

    sent = hull_flow("Li-Sn", calculator, phases=["LiSn"], relax_maker=incar_relax_maker(calculator, extra.get("incar")),
                     references=extra["references"])
    entry = {"kind": "hull", "settings": {"system": "Li-Sn", "calculator": calculator, "phases": ["LiSn"],
                                          "structure_dirs": [], **extra}}
    rebuilt = _rebuild(entry)
    assert [j.uuid for j in rebuilt.jobs] == [j.uuid for j in sent.jobs]
    assert rebuilt.output.uuid != hull_flow("Li-Sn", calculator, phases=["LiSn"]).output.uuid
