"""CI-NEB maker: endpoint checks, band convergence, batching equals image-by-image."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from alloyflow.workflows.jobs.batched import evaluate_batch, supports_batching
from alloyflow.workflows.jobs.neb import EndpointError, NebDocument, NebMaker


def bcc_vacancy_hop(a: float = 3.51, n: int = 2) -> tuple[Structure, Structure]:
    """Vacancy on site 0 of an n×n×n bcc cell; a nearest neighbour hops into it (same site order)."""
    s = Structure.from_spacegroup("Im-3m", Lattice.cubic(a), ["Li"], [[0, 0, 0]])
    s.make_supercell([n, n, n])
    j = int(np.argsort(s.distance_matrix[0])[1])
    initial = s.copy()
    initial.remove_sites([0])
    final = initial.copy()
    final.replace(j - 1, "Li", coords=s[0].frac_coords)
    return initial, final


@pytest.fixture(scope="module")
def hop():
    return bcc_vacancy_hop()


@pytest.fixture(scope="module")
def mock_doc(hop):
    return NebMaker(calculator="mock", n_images=5).run(*hop, label="bcc Li hop")


def test_symmetric_hop_converges(mock_doc):
    d = mock_doc
    assert isinstance(d, NebDocument)
    assert d.converged and d.max_force <= d.fmax
    assert len(d.energies) == len(d.images) == d.n_images + 2 == 7
    assert d.forward_barrier > 0.05
    assert abs(d.forward_barrier - d.reverse_barrier) < 1e-3
    assert abs(d.endpoint_asymmetry) < 1e-3
    assert d.climbing_image == 3  # the saddle of a symmetric hop is the middle image
    assert d.force_calls > 0 and d.n_steps > 0
    assert d.calculator["name"] == "mock" and d.input_hash
    assert 2.9 < d.hop_distance < 3.2  # one nearest-neighbour bcc hop, a*sqrt(3)/2


def test_images_keep_site_order_and_cell(mock_doc, hop):
    first, last = mock_doc.images[0], mock_doc.images[-1]
    assert [str(s.specie) for s in first] == [str(s.specie) for s in hop[0]]
    assert np.allclose(first.lattice.matrix, last.lattice.matrix)
    moved = first.lattice.get_all_distances(first.frac_coords, last.frac_coords).diagonal()
    assert (moved > 1.0).sum() == 1


def test_unconverged_band_is_returned(hop):
    for optimizer in ("ODE", "FIRE"):
        d = NebMaker(calculator="mock", n_images=3, max_steps=2, fmax=1e-4, optimizer=optimizer).run(*hop)
        assert not d.converged and d.n_steps <= 2
        assert d.force_calls <= 2 + 3 * 3  # endpoints + initial band + at most 2 steps
        assert len(d.energies) == 5 and d.forward_barrier > 0 and d.max_force > d.fmax


def test_batched_flag_is_not_in_key(hop):
    assert NebMaker(calculator="mock").key(*hop) == NebMaker(calculator="mock", batched=False).key(*hop)
    assert NebMaker(calculator="mock").key(*hop) != NebMaker(calculator="mock", n_images=7).key(*hop)


def test_mismatched_species_raise(hop):
    initial, final = hop
    bad = final.copy()
    bad.replace(3, "Na")
    with pytest.raises(EndpointError, match="species"):
        NebMaker(calculator="mock").run(initial, bad)


def test_mismatched_atom_count_raises(hop):
    initial, final = hop
    bad = final.copy()
    bad.remove_sites([3])
    with pytest.raises(EndpointError, match="numbers of atoms"):
        NebMaker(calculator="mock").run(initial, bad)


def test_mismatched_cells_raise(hop):
    initial, final = hop
    bad = final.copy()
    bad.scale_lattice(final.volume * 1.02)
    with pytest.raises(EndpointError, match="lattices"):
        NebMaker(calculator="mock").run(initial, bad)


def test_identical_endpoints_raise(hop):
    initial, _ = hop
    with pytest.raises(EndpointError, match="same minimum"):
        NebMaker(calculator="mock").run(initial, initial.copy())


def test_keyed_job_runs_through_store(tmp_path, hop):
    from alloyflow.engine import ResultStore, run_cached

    maker = NebMaker(calculator="mock", n_images=3)
    with ResultStore(tmp_path) as store:
        job = maker.keyed_job(*hop, label="hop")
        first = run_cached(job, store)
        doc = NebDocument.model_validate(store.output(job.uuid))
        again = run_cached(maker.keyed_job(*hop, label="hop"), store)
    assert first.computed == 1 and again.reused == 1
    assert len(doc.images) == 5 and doc.input_hash == maker.key(*hop)


def test_mock_is_evaluated_image_by_image(hop):
    assert not supports_batching("mock")
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in hop]
    results = evaluate_batch("mock", atoms)
    assert len(results) == 2 and results[0][1].shape == (len(hop[0]), 3)


def _rattled_band(n_images: int = 3):
    base = AseAtomsAdaptor.get_atoms(Structure.from_spacegroup("Im-3m", Lattice.cubic(3.44), ["Li"], [[0, 0, 0]]) * 2)
    band = []
    for k in range(n_images):
        a = base.copy()
        a.rattle(0.05, seed=k)
        band.append(a)
    return band


@pytest.mark.slow
@pytest.mark.parametrize("calculator", ["sevennet", "chgnet"])
def test_batched_equals_image_by_image(calculator):
    assert supports_batching(calculator)
    band = _rattled_band(3)
    single = evaluate_batch(calculator, band, batched=False)
    batched = evaluate_batch(calculator, band, batched=True)
    for (e1, f1), (e2, f2) in zip(single, batched):
        assert abs(e1 - e2) < 1e-5
        assert np.abs(f1 - f2).max() < 1e-4
    # several model calls (forced by a small max_atoms) give the same numbers too
    chunked = evaluate_batch(calculator, band, max_atoms=32)
    assert max(abs(a[0] - b[0]) for a, b in zip(single, chunked)) < 1e-5
    # the images differ, so a mix-up between them would show
    assert np.abs(single[0][1] - single[1][1]).max() > 1e-2


@pytest.mark.slow
def test_sevennet_bcc_li_vacancy_hop():
    initial, final = bcc_vacancy_hop(a=3.44)  # 15 atoms, vacancy images 6.9 Å apart
    d = NebMaker(calculator="sevennet", n_images=3).run(initial, final, label="bcc Li")
    assert d.converged
    assert 0.03 < d.forward_barrier < 0.20
    assert abs(d.forward_barrier - d.reverse_barrier) < 0.01
    assert d.model_calls < d.force_calls  # the band went through the model in one call per step


def test_same_minimum_outcome_is_stored_not_recomputed(tmp_path):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.engine import ResultStore, run_cached

    atoms = bulk("Li", "bcc", a=3.44, cubic=True).repeat(2)
    del atoms[0]
    initial = AseAtomsAdaptor.get_structure(atoms)
    moved = atoms.copy()
    moved.positions[1] += [0.05, 0.0, 0.0]  # not a hop: both "endpoints" are one minimum
    final = AseAtomsAdaptor.get_structure(moved)
    maker = NebMaker(calculator="mock", n_images=1, relax_endpoints=False)
    for expected_reused in (0, 1):
        with ResultStore(tmp_path) as store:
            job = maker.keyed_job(initial, final, label="not a hop")
            summary = run_cached(job, store)
            assert summary.reused == expected_reused
            assert "same minimum" in store.output(job.uuid)["endpoint_error"]
