"""Calculator registry: names, versions, element checks; the mock's physics."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from alloyflow.calculators import (
    DEFAULT_CALCULATOR,
    CalculatorError,
    available_calculators,
    calculator_info,
    check_elements,
    get_calculator,
)


def test_registry_names_and_default():
    assert DEFAULT_CALCULATOR == "sevennet"
    assert {"sevennet", "chgnet", "mock"} <= set(available_calculators())
    info = calculator_info("mock")
    assert info["kind"] == "test" and info["version"] and "TEST ONLY" in info["label"]
    assert calculator_info("chgnet")["version"] == "0.4.2"
    assert calculator_info()["model"] == "SevenNet-0"


def test_unknown_calculator():
    with pytest.raises(CalculatorError, match="unknown calculator 'vasp5'"):
        get_calculator("vasp5")


def test_unsupported_element_is_named():
    with pytest.raises(CalculatorError, match="Og"):
        check_elements("chgnet", ["Li", "Og"], where="my.cif")


def test_mock_forces_and_stress_are_consistent():
    atoms = bulk("NaCl", "rocksalt", a=5.0).repeat(2)
    atoms.set_chemical_symbols(["Li", "Sn"] * 8)
    atoms.rattle(0.05, seed=3)
    atoms.calc = get_calculator("mock")
    assert np.allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5), atol=1e-4)
    assert np.allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-6)


@pytest.mark.slow
def test_sevennet_loads_and_reports_version():
    check_elements("sevennet", ["Li", "In", "Sn"])
    atoms = bulk("Li", "bcc", a=3.44, cubic=True)
    atoms.calc = get_calculator("sevennet")
    e = atoms.get_potential_energy() / len(atoms)
    assert -2.2 < e < -1.6  # bcc Li cohesive scale on a PBE-trained potential
    assert calculator_info("sevennet")["version"] == "0.13.0"


def test_workflow_defaults_and_cli_default():
    from alloyflow.calculators import DEFAULT_CALCULATOR, WORKFLOW_DEFAULTS, available_calculators, default_calculator
    from alloyflow.cli import build_parser
    from alloyflow.commands.parser import resolve_calculator

    assert default_calculator() == DEFAULT_CALCULATOR and default_calculator("no such workflow") == DEFAULT_CALCULATOR
    assert set(WORKFLOW_DEFAULTS.values()) <= set(available_calculators())
    for command in ("hull", "barriers", "study", "thermo", "refine", "search"):
        args = build_parser().parse_args([command, "Li-Al"])  # outside the fine-tuned span: the workflow's default
        resolve_calculator(args)
        assert args.calculator == default_calculator(command) == WORKFLOW_DEFAULTS[command]


@pytest.mark.parametrize("argv, expected", [
    (["study", "Li-In", "Li-Sn"], "alloyflow-LiInSn"),
    (["hull", "Li-Sn"], "alloyflow-LiInSn"),
    (["barriers", "Li2Sn5"], "alloyflow-LiInSn"),  # a phase's formula names its elements
    (["barriers", "LiSn_beta"], "alloyflow-LiInSn"),
    (["barriers", "Li"], "alloyflow-LiInSn"),  # bcc Li: inside the span
    (["barriers", "--table", "LiSn", "Li2Sn5"], "alloyflow-LiInSn"),
    (["refine", "Li17Sn4"], "alloyflow-LiInSn"),  # refines the bands the default made
    (["study", "Li-In", "Li-Al"], "sevennet"),  # one element outside: SevenNet-0 for the whole study
    (["hull", "Li-Si"], "sevennet"),
    (["barriers", "Li2Sn5", "--calculator", "sevennet"], "sevennet"),  # given: kept
    (["barriers", "Li2Sn5", "--calculator", "mock"], "mock"),
])
def test_li_in_sn_commands_default_to_the_fine_tuned_potential(argv, expected):
    from alloyflow.cli import build_parser
    from alloyflow.commands.parser import resolve_calculator

    args = build_parser().parse_args(argv)
    assert args.calculator in (None, expected)
    resolve_calculator(args)
    assert args.calculator == expected


@pytest.mark.slow
def test_other_sevennet_models_are_registered_and_differ():
    """7net-mf-0 (PBE modal) and 7net-l3i5 ship with sevenn: they load offline and give their own numbers."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.calculators import calculator_info, get_calculator

    atoms = AseAtomsAdaptor.get_atoms(Structure(Lattice.cubic(3.9), ["Li", "In"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    energies = {}
    for name in ("sevennet", "sevennet-mf0", "sevennet-l3i5"):
        a = atoms.copy()
        a.calc = get_calculator(name)
        energies[name] = a.get_potential_energy()
        assert calculator_info(name)["kind"] == "mlip" and calculator_info(name)["version"] != "not installed"
    assert len({round(e, 4) for e in energies.values()}) == 3
    assert all(-10 < e / 2 < 0 for e in energies.values())  # eV/atom, a bound metal


def test_the_python_study_settings_follow_the_same_default_as_the_command_line():
    from alloyflow.workflows.flows.study import StudyFlowMaker, StudySettings

    assert StudySettings(systems=["Li-In", "Li-Sn"]).calculator == "alloyflow-LiInSn"
    assert StudySettings(systems=["Li-Al"]).calculator == "sevennet"
    assert StudySettings(systems=["Li-Sn"], calculator="mock").calculator == "mock"
    maker = StudyFlowMaker(settings=StudySettings(systems=["Li-Sn"]))
    assert maker.makers.calculator == maker.settings.calculator == "alloyflow-LiInSn"
