"""NEB robustness: IDPP that stalls, endpoints in different atom orders, left-handed cells, endpoint force calls."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.mep import NEB
from ase.mep.neb import idpp_interpolate
from ase.optimize import MDMin
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from test_neb import bcc_vacancy_hop  # tests/ is on sys.path (pytest prepend import mode)

import alloyflow.workflows.jobs.relax as relax_module
from alloyflow.calculators import CalculatorSpec, registry
from alloyflow.calculators.mock import MockPairPotential
from alloyflow.structures.cells import is_right_handed, right_handed
from alloyflow.workflows.jobs.neb import (
    IDPP_FMAX,
    IDPP_STEPS,
    EndpointError,
    NebMaker,
    idpp_relax,
    interpolate_band,
    matched_final,
)
from alloyflow.workflows.jobs.relax import RelaxMaker, counting_calculations


@pytest.fixture(scope="module")
def hop():
    return bcc_vacancy_hop()


@pytest.fixture(scope="module")
def mock_doc(hop):
    return NebMaker(calculator="mock", n_images=3).run(*hop, label="bcc Li hop")


# --------------------------------------------------------------------------- IDPP that stalls (issue item 2)


def fcc_vacancy_hop(element: str, cubic: bool = True) -> tuple[Structure, Structure]:
    """Vacancy on atom 0 of a 2x2x2 fcc cell (conventional: 31 atoms, primitive: 7); a neighbour hops into it."""
    atoms = bulk(element, "fcc", cubic=cubic).repeat(2)
    j = int(np.argsort(atoms.get_all_distances(mic=True)[0])[1])
    initial = atoms.copy()
    del initial[0]
    final = initial.copy()
    final.positions[j - 1] = atoms.positions[0]
    return AseAtomsAdaptor.get_structure(initial), AseAtomsAdaptor.get_structure(final)


def _band(initial: Structure, final: Structure, n_images: int = 5):
    ini, fin = AseAtomsAdaptor.get_atoms(initial), AseAtomsAdaptor.get_atoms(final)
    images = [ini] + [ini.copy() for _ in range(n_images)] + [fin]
    neb = NEB(images, method="improvedtangent", allow_shared_calculator=True)
    neb.interpolate(method="linear", mic=True, apply_constraint=False)
    return images, neb


@pytest.fixture
def emt(monkeypatch):
    """ASE's EMT as a registry calculator for one test."""
    monkeypatch.setitem(registry._REGISTRY, "emt-test", CalculatorSpec(
        name="emt-test", model="EMT", kind="test", package="ase", description="ASE's EMT (Cu, Al, ...)",
        factory=lambda **kw: EMT()))
    yield "emt-test"
    registry.forget_cached("emt-test")


# CI-NEB barriers (meV) of the NebMaker of that time (endpoint_trials=1, climbing image stopped at fmax:
# climb_fmax=None) on these hops with the 1000-step IDPP that ran before the stall test (38 s and 37 s of
# CPU on the 2-core test machine; now 3.8 s each).
BARRIER_BEFORE_STALL_TEST = {"Cu": 763.316, "Al": 386.226}


@pytest.mark.parametrize("element", ["Cu", "Al"])
def test_stalled_idpp_stops_early_with_the_same_barrier(element, emt):
    d = NebMaker(calculator=emt, endpoint_trials=1, climb_fmax=None).run(*fcc_vacancy_hop(element),
                                                                         label=f"fcc {element}")
    assert d.converged
    # the IDPP residual stalls near 0.006 (Cu) / 0.004 (Al), far above IDPP_FMAX: it used to run all 1000 steps
    assert 50 <= d.idpp_steps < 200 and d.idpp_residual > IDPP_FMAX
    assert abs(1000 * d.forward_barrier - BARRIER_BEFORE_STALL_TEST[element]) < 1.0


def test_stall_test_only_stops_an_idpp_that_does_not_converge():
    """Where IDPP converges the band is ASE's ``idpp_interpolate`` band to the bit (so keys stay valid)."""
    initial, final = bcc_vacancy_hop(a=3.44)
    images_ase, neb_ase = _band(initial, final)
    idpp_interpolate(neb_ase, traj=None, log=None, fmax=IDPP_FMAX, optimizer=MDMin, mic=True, steps=IDPP_STEPS)
    images, _ = _band(initial, final)
    steps, residual = interpolate_band(images)
    assert steps < 50 and residual <= IDPP_FMAX
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(images, images_ase))
    assert all(a.calc is None for a in images)  # the IDPP calculators are gone again


def test_stall_test_off_runs_to_the_step_limit():
    hop = fcc_vacancy_hop("Cu", cubic=False)  # 7 atoms: cheap, and its IDPP stalls too (after 83 steps)
    _, neb = _band(*hop)
    steps, residual = idpp_relax(neb, steps=120, stall_steps=0)
    assert steps == 120 and residual > IDPP_FMAX
    _, neb = _band(*hop)
    steps, _ = idpp_relax(neb, steps=120)
    assert 50 <= steps < 120


# --------------------------------------------------------------------------- atom order (issue item 3)


def _shuffled(structure: Structure, seed: int = 0) -> Structure:
    order = np.random.default_rng(seed).permutation(len(structure))
    return Structure.from_sites([structure[int(i)] for i in order])


def test_final_endpoint_in_another_order_is_reordered(hop, mock_doc):
    initial, final = hop
    shuffled = _shuffled(final)
    assert (np.linalg.norm(shuffled.cart_coords - final.cart_coords, axis=1) > 1).sum() > 10
    assert np.allclose(matched_final(initial, shuffled).frac_coords, final.frac_coords)
    assert matched_final(initial, final) is final
    d = NebMaker(calculator="mock", n_images=3).run(initial, shuffled, label="shuffled")
    assert d.converged
    assert abs(d.forward_barrier - mock_doc.forward_barrier) < 1e-6
    assert 2.9 < d.hop_distance < 3.2
    assert d.input_hash == NebMaker(calculator="mock", n_images=3).key(initial, shuffled)  # keyed as given


def test_two_species_in_another_order_are_reordered(hop):
    initial, final = hop
    initial, final = initial.copy(), final.copy()
    for k in (2, 9):  # not the hopping atom
        initial.replace(k, "Na")
        final.replace(k, "Na")
    shuffled = _shuffled(final, seed=3)
    assert [str(s.specie) for s in shuffled] != [str(s.specie) for s in final]
    assert np.allclose(matched_final(initial, shuffled).frac_coords, final.frac_coords)
    assert [str(s.specie) for s in matched_final(initial, shuffled)] == [str(s.specie) for s in final]


def test_endpoints_with_several_moving_atoms_raise(hop):
    initial, final = hop
    bad = final.copy()
    for k in (4, 7):  # two more atoms moved by 1.2 Å: no reordering makes that one hop
        bad.translate_sites([k], [1.2, 0, 0], frac_coords=False)
    with pytest.raises(EndpointError, match=r"^3 atoms move more than 0.5 Å between the endpoints") as exc:
        NebMaker(calculator="mock").run(initial, bad)
    assert "\n" not in str(exc.value)
    with pytest.raises(EndpointError, match="3 atoms move"):
        NebMaker(calculator="mock").keyed_job(initial, bad, label="bad")


# --------------------------------------------------------------------------- left-handed cells (issue item 5)


def _left_handed(structure: Structure) -> Structure:
    """The same crystal on the basis (a, b, -c): det < 0, every atom at the same Cartesian position."""
    m = structure.lattice.matrix * [[1], [1], [-1]]
    frac = structure.frac_coords * [1, 1, -1]
    return Structure(Lattice(m), structure.species, frac)


def _li_sn_cell() -> Structure:
    """A small, strained, low-symmetry Li-Sn cell whose cell relaxation moves all six lattice parameters."""
    lattice = Lattice.from_parameters(4.3, 4.6, 5.0, 84, 97, 101)
    return Structure(lattice, ["Li", "Li", "Sn", "Sn"],
                     [[0, 0, 0], [0.52, 0.47, 0.1], [0.26, 0.74, 0.55], [0.73, 0.22, 0.6]])


class SignedVolumeMock(MockPairPotential):
    """The mock potential with CHGNet 0.4.2's bug: stress divided by the signed volume (wrong sign if det < 0)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        self.results["stress"] = self.results["stress"] * np.sign(np.linalg.det(self.atoms.cell[:]))


def test_right_handed_moves_no_atom():
    s = _li_sn_cell()
    assert is_right_handed(s) and right_handed(s) is s
    left = _left_handed(s)
    assert not is_right_handed(left)
    fixed = right_handed(left)
    assert is_right_handed(fixed)
    assert np.allclose(fixed.cart_coords, left.cart_coords) and np.allclose(fixed.cart_coords, s.cart_coords)
    assert np.isclose(fixed.volume, s.volume) and [str(x.specie) for x in fixed] == [str(x.specie) for x in s]


def _stress(structure: Structure) -> np.ndarray:
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = MockPairPotential()
    return atoms.get_stress(voigt=False)


@pytest.mark.parametrize("bug", [False, True], ids=["mock", "mock with signed-volume stress"])
def test_left_handed_cell_relaxes_like_the_right_handed_one(bug, monkeypatch):
    if bug:
        monkeypatch.setattr(relax_module, "get_calculator", lambda name=None, **kw: SignedVolumeMock())
    right = _li_sn_cell()
    left = _left_handed(right)
    maker = RelaxMaker(calculator="mock", fix_symmetry=False, fmax=0.005, steps=600)
    a, b = maker.run(right), maker.run(left)
    assert a.converged and b.converged
    assert is_right_handed(b.structure)  # the calculator saw (and the result keeps) a right-handed cell
    assert b.input_structure == left and b.input_hash == maker.key(left)  # keyed as given
    assert abs(a.energy - b.energy) < 1e-6
    assert abs(a.volume_per_atom - b.volume_per_atom) < 1e-4 * a.volume_per_atom
    assert np.allclose(_stress(a.structure), _stress(b.structure), atol=1e-6)


def test_left_handed_endpoints_give_the_same_band(hop, mock_doc):
    left = [_left_handed(s) for s in hop]
    d = NebMaker(calculator="mock", n_images=3).run(*left, label="left-handed")
    assert abs(d.forward_barrier - mock_doc.forward_barrier) < 1e-6
    assert all(is_right_handed(s) for s in d.images)


# --------------------------------------------------------------------------- endpoint force calls (issue item 6)


class CountingMock(MockPairPotential):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def calculate(self, *args, **kwargs):
        self.calls += 1
        super().calculate(*args, **kwargs)


def test_endpoint_force_calls_are_calculator_calls(hop, monkeypatch):
    calc = CountingMock()
    monkeypatch.setattr(relax_module, "get_calculator", lambda name=None, **kw: calc)  # endpoint relaxations only
    d = NebMaker(calculator="mock", n_images=3, endpoint_trials=2).run(*hop)
    assert calc.calls > 4 and d.endpoint_force_calls == calc.calls
    assert "calculate" not in vars(calc)  # the counter is unwrapped again


def test_relaxation_counts_calculations_not_frames(monkeypatch):
    calc = CountingMock()
    monkeypatch.setattr(relax_module, "get_calculator", lambda name=None, **kw: calc)
    s = bcc_vacancy_hop()[0]
    s.perturb(0.1, min_distance=0.05, seed=1)
    doc = RelaxMaker(calculator="mock", relax_cell=False, fix_symmetry=False).run(s)
    assert doc.force_calls == calc.calls > 2
    assert doc.n_steps == doc.force_calls + 1  # atomate2's trajectory repeats the last frame
    calc.calls = 0
    static = relax_module.StaticMaker(calculator="mock").run(s)
    assert static.force_calls == calc.calls == 1
    # the calculator still holds the results of the last structure it saw: nothing to compute, nothing counted
    assert relax_module.StaticMaker(calculator="mock").run(s).force_calls == 0


def test_counting_calculations_restores_the_calculator():
    calc = MockPairPotential()
    atoms = AseAtomsAdaptor.get_atoms(bcc_vacancy_hop()[0])
    atoms.calc = calc
    with counting_calculations(calc) as n:
        atoms.get_forces()
        atoms.get_potential_energy()  # cached: no second calculation
        atoms.positions[0] += 0.1
        atoms.get_forces()
    assert n == [2] and "calculate" not in vars(calc)
