"""Diffusivity arithmetic and Vineyard attempt frequencies: hand-computed models, mock bookkeeping, one real band."""

import math

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from pymatgen.core import Lattice, Structure

from alloyflow import calculators
from alloyflow.analysis.diffusion import (
    DiffusivityResult,
    diffusivities_for,
    diffusivity,
)
from alloyflow.analysis.migration import BarrierResult, HopBarrier, SupercellInfo
from alloyflow.calculators import CalculatorSpec
from alloyflow.workflows.jobs.attempt import (
    AttemptFrequencyMaker,
    run_attempt_frequencies,
    signed_frequencies_thz,
    vineyard_prefactor,
)
from alloyflow.engine import ResultStore

# --------------------------------------------------------------------------- D = a^2 nu exp(-Ea/kT) / (2d)


def test_diffusivity_by_hand_at_300_and_688_K():
    # Ea = 0.1 eV, a = 3 Å, nu = 1e13 Hz, d = 3: a^2 nu / 6 = 9e-16 cm^2 * 1e13 / 6 = 1.5e-3 cm^2/s
    # kT(300 K) = 0.0258520 eV -> exp(-3.868173) = 0.0208965; kT(688.15 K) = 0.0593002 eV -> exp(-1.686336) = 0.185197
    assert diffusivity(0.1, 3.0, 1e13, 3, 300.0) == pytest.approx(1.5e-3 * 0.0208965, rel=1e-5)
    assert diffusivity(0.1, 3.0, 1e13, 3, 688.15) == pytest.approx(1.5e-3 * 0.185197, rel=1e-5)
    # 1D: three times the 3D value; zero barrier: the bare prefactor
    assert diffusivity(0.1, 3.0, 1e13, 1, 300.0) == pytest.approx(3 * diffusivity(0.1, 3.0, 1e13, 3, 300.0))
    assert diffusivity(0.0, 2.0, 5e12, 2, 300.0) == pytest.approx(4e-16 * 5e12 / 4)


@pytest.mark.parametrize(
    "args, match",
    [
        ((-0.1, 3.0, 1e13, 3, 300.0), "barrier_ev"),
        ((0.1, 0.0, 1e13, 3, 300.0), "hop_length_A"),
        ((0.1, 3.0, -1.0, 3, 300.0), "attempt_frequency_hz"),
        ((0.1, 3.0, 1e13, 4, 300.0), "dimension"),
        ((0.1, 3.0, 1e13, 3, 0.0), "temperature_k"),
        ((float("nan"), 3.0, 1e13, 3, 300.0), "barrier_ev"),
    ],
)
def test_bad_input_names_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        diffusivity(*args)


def _result(percolation, percolation_hops, hops):
    return BarrierResult(
        phase="X", calculator={"name": "mock", "kind": "test", "label": "mock-Morse (TEST ONLY)"},
        supercell=SupercellInfo(natoms=15, min_image_distance=6.0, matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]]),
        hops=hops, percolation=percolation, percolation_hops=percolation_hops,
    )


def test_diffusivities_per_percolating_network():
    hops = [HopBarrier(id=0, length=2.5, cost=0.2, neb_key="k0"), HopBarrier(id=1, length=3.0, cost=0.3, neb_key="k1")]
    result = _result({"1d": 0.2, "2d": 0.3, "3d": None}, {"1d": 0, "2d": 1, "3d": None}, hops)
    out = diffusivities_for(result, {0: 2e12, 1: 4e12}, temperatures=(300.0, 688.15))
    assert [r.network for r in out] == ["1d", "2d"] and [r.dimension for r in out] == [1, 2]
    d1, d2 = out
    assert d1.hop_id == 0 and d1.hop_length_A == 2.5 and d1.attempt_frequency_hz == 2e12
    assert d1.at(300.0) == pytest.approx(6.25e-16 * 2e12 * math.exp(-0.2 / (8.617333262e-5 * 300.0)) / 2)
    assert d2.at(688.15) == pytest.approx(9e-16 * 4e12 * math.exp(-0.3 / (8.617333262e-5 * 688.15)) / 4)
    assert d1.attempt_frequency_source == "given" and "per unit vacancy site fraction" in d1.assumptions
    assert any("test potential" in w for w in d1.warnings)
    assert DiffusivityResult.model_validate(d1.model_dump(mode="json")).at(300.0) == d1.at(300.0)
    # keys read back from JSON are strings
    assert diffusivities_for(result, {"0": 2e12, "1": 4e12})[1].at(300.0) == pytest.approx(d2.at(300.0))
    # one number for every hop
    assert diffusivities_for(result, 1e13)[0].attempt_frequency_hz == 1e13
    with pytest.raises(ValueError, match="no attempt frequency for hop 1"):
        diffusivities_for(result, {0: 1e13})
    with pytest.raises(KeyError, match="no diffusivity at 500"):
        d1.at(500.0)
    # nothing percolates: no networks
    assert diffusivities_for(_result({"1d": None, "2d": None, "3d": None}, {"1d": None, "2d": None, "3d": None}, hops), 1e13) == []


# --------------------------------------------------------------------------- Vineyard on hand-solvable models

EB, X0, K0, BETA, KZ = 0.2, 1.0, 2.0, 0.5, 3.0
CENTER = np.array([10.0, 10.0, 10.0])


class DoubleWell(Calculator):
    """One atom: V = Eb (1 - (x/x0)^2)^2 + k0 (1 + beta x^2/x0^2) y^2 / 2 + kz z^2 / 2 (x, y, z from the box centre).

    Minima at x = ±x0 with V''_xx = 8 Eb / x0^2 and k_y = k0 (1 + beta); saddle at x = 0 with
    V''_xx = -4 Eb / x0^2 and k_y = k0. Vineyard, atom mode: nu* = nu_x(min) * sqrt(1 + beta).
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x, y, z = (self.atoms.get_positions() - CENTER).T
        u = x / X0
        ky = K0 * (1 + BETA * u**2)
        e = EB * (1 - u**2) ** 2 + 0.5 * ky * y**2 + 0.5 * KZ * z**2
        fx = -(EB * 2 * (1 - u**2) * (-2 * u / X0) + 0.5 * K0 * BETA * 2 * u / X0 * y**2)
        forces = np.stack([fx, -ky * y, -KZ * z], axis=1)
        self.results = {"energy": float(e.sum()), "free_energy": float(e.sum()), "forces": forces, "stress": np.zeros(6)}


@pytest.fixture
def double_well(monkeypatch):
    spec = CalculatorSpec(name="double-well", model="double well", kind="test", package="alloyflow",
                          description="test", factory=lambda **kw: DoubleWell())
    monkeypatch.setitem(calculators.registry._REGISTRY, "double-well", spec)
    return "double-well"


def _atom_at(x):
    return Structure(Lattice.cubic(20.0), ["Li"], [(CENTER + [x, 0, 0]) / 20.0])


def test_vineyard_of_a_double_well_by_hand(double_well):
    m = 6.94  # amu (pymatgen's Li mass, 6.941 rounded: compared at 1e-3)
    omega = lambda k: math.sqrt(k * 1.602176634e-19 / (m * 1.66053906660e-27)) * 1e10
    nu_x = omega(8 * EB / X0**2) / (2 * math.pi)
    expected = nu_x * math.sqrt(1 + BETA)
    maker = AttemptFrequencyMaker(calculator=double_well, mode="atom", delta=0.005)
    doc = maker.run(_atom_at(X0), _atom_at(0.0), 0, label="toy")
    assert doc.nu_hz == pytest.approx(expected, rel=2e-3)
    assert doc.n_atoms_in_hessian == 1 and doc.n_force_calls == 12 and not doc.flags
    assert doc.n_imaginary_initial == 0 and doc.n_imaginary_saddle == 1
    saddle_x = doc.frequencies_saddle_thz[0]
    assert saddle_x == pytest.approx(-omega(4 * EB / X0**2) / (2 * math.pi) / 1e12, rel=2e-3)
    # swapped states are flagged, not hidden
    wrong = maker.run(_atom_at(0.0), _atom_at(X0), 0, label="swapped")
    assert any("initial state has 1 imaginary" in f for f in wrong.flags)
    assert any("not exactly one" in f for f in wrong.flags)


def test_vineyard_prefactor_and_spectra_by_hand():
    # 2 modes over 1: nu* = 3 * 4 / 6 THz = 2 THz
    assert vineyard_prefactor([3.0, 4.0], [-5.0, 6.0]) == pytest.approx(2e12)
    # n_drop removes the near-zero (translation) modes of both states
    assert vineyard_prefactor([0.0, 3.0, 4.0], [-5.0, 1e-4, 6.0], n_drop=1) == pytest.approx(2e12)
    with pytest.raises(ValueError, match="same non-zero length"):
        vineyard_prefactor([1.0], [-1.0, 2.0])
    # one atom of mass 1 amu, k = 1 eV/Å^2: omega = 9.822e13 rad/s -> 15.63 THz
    freqs = signed_frequencies_thz(np.diag([1.0, -1.0, 4.0]), np.array([1.0]))
    assert freqs == pytest.approx([-15.633, 15.633, 31.266], rel=1e-4)


def test_bad_attempt_input(double_well):
    with pytest.raises(ValueError, match="unknown mode"):
        AttemptFrequencyMaker(calculator=double_well, mode="nope").run(_atom_at(X0), _atom_at(0.0), 0)
    with pytest.raises(ValueError, match="moving_index 3"):
        AttemptFrequencyMaker(calculator=double_well).run(_atom_at(X0), _atom_at(0.0), 3)


# --------------------------------------------------------------------------- bookkeeping on the mock potential


def test_run_attempt_frequencies_on_mock_barriers(tmp_path):
    from alloyflow.workflows.flows.barriers import run_barriers

    seen = []
    with ResultStore(tmp_path) as store:
        result = run_barriers("Li", store, calculator="mock", min_image_distance=6.0, n_images=3, max_length=3.6)
        ids = sorted({i for i in result.percolation_hops.values() if i is not None})
        docs = run_attempt_frequencies(result, store, "mock", progress=lambda label, reused: seen.append(reused))
        assert sorted(docs) == ids and seen == [False] * len(ids)
        for hop_id, doc in docs.items():
            assert doc.mode == "atom" and doc.nu_hz > 0 and doc.n_force_calls == 12 * doc.n_atoms_in_hessian
            assert doc.neb_key == next(h.neb_key for h in result.hops if h.id == hop_id)
            assert doc.moving_index in doc.atom_indices and doc.calculator["name"] == "mock"
        seen.clear()
        again = run_attempt_frequencies(result, store, "mock", progress=lambda label, reused: seen.append(reused))
        assert seen == [True] * len(ids) and {k: d.nu_hz for k, d in again.items()} == {k: d.nu_hz for k, d in docs.items()}
        out = diffusivities_for(result, docs)
        assert out and all(r.attempt_frequency_source == "vineyard" for r in out)
        # a hop without a band: an error unless a labelled fallback is asked for
        result.hops[0].neb_key = None
        with pytest.raises(ValueError, match="no NEB band stored"):
            run_attempt_frequencies(result, store, "mock", hops=[0])
        fixed = run_attempt_frequencies(result, store, "mock", hops=[0], fallback_hz=1e13)[0]
        assert fixed.mode == "fixed" and fixed.nu_hz == 1e13 and "not computed" in fixed.flags[0]
        assert diffusivities_for(result, {**docs, 0: fixed})[0].attempt_frequency_source in ("fixed", "vineyard")
        # a band without a saddle has no transition state: no Vineyard frequency, the same choice
        result.hops[1].no_saddle = "its highest point is the initial endpoint"
        with pytest.raises(ValueError, match="has no saddle"):
            run_attempt_frequencies(result, store, "mock", hops=[1])
        with pytest.raises(ValueError, match="computed with 'mock'"):
            run_attempt_frequencies(result, store, "sevennet")


# --------------------------------------------------------------------------- the real potential


@pytest.mark.slow
def test_sevennet_vineyard_bcc_li_hop(sevennet_bcc_li_band):
    from alloyflow.workflows.jobs.attempt import band_states

    initial, saddle, moving = band_states(sevennet_bcc_li_band)
    atom = AttemptFrequencyMaker(calculator="sevennet", mode="atom").run(initial, saddle, moving, label="bcc Li")
    assert atom.n_imaginary_saddle == 1 and atom.n_imaginary_initial == 0
    assert 0.5e12 < atom.nu_hz < 20e12  # THz range
    local = AttemptFrequencyMaker(calculator="sevennet", mode="local").run(initial, saddle, moving, label="bcc Li")
    assert local.n_atoms_in_hessian > 1 and local.n_force_calls == 12 * local.n_atoms_in_hessian
    assert local.n_imaginary_saddle == 1 and local.nu_hz > 0
    # the vacancy cage of SevenNet-0 bcc Li is soft and anharmonic: flagged, never hidden
    assert local.ok or any("soft" in f or "imaginary" in f for f in local.flags)
    d = diffusivity(sevennet_bcc_li_band.forward_barrier, initial.lattice.get_all_distances(
        initial.frac_coords[moving], sevennet_bcc_li_band.images[-1].frac_coords[moving])[0, 0], atom.nu_hz, 3, 300.0)
    assert 1e-9 < d < 1e-3
