"""alloyflow's VASP makers on outputs that VASP itself wrote (atomate2's test data), through ``monkeypatch_vasp``.

The reference folders are read from ``../shared/vasp-real`` next to the
repository (``ALLOYFLOW_VASP_REAL`` overrides it) and never copied into the
project: see their README. Their inputs are atomate2's, not alloyflow's, so
the mock checks only what the makers share with them (POTCAR, and POSCAR
where the structure is the same). Every number alloyflow reads is compared
with what pymatgen (``Vasprun``, ``Outcar``) or VTST's own OUTCAR lines say.
Edited copies (a smaller NSW, no VTST banner) are made in ``tmp_path``.
"""

import gzip
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("atomate2.vasp")

from pymatgen.core import Structure  # noqa: E402
from pymatgen.io.vasp import Outcar, Vasprun  # noqa: E402

REAL = Path(os.environ.get("ALLOYFLOW_VASP_REAL", Path(__file__).parents[2] / "shared" / "vasp-real"))

pytestmark = pytest.mark.skipif(
    not (REAL / "Si_NEB").is_dir(),
    reason=f"real VASP outputs not found in {REAL} (atomate2's test data, see ../shared/vasp-real/README.md; "
           "set ALLOYFLOW_VASP_REAL to their folder)",
)

import alloyflow.calculators.dft  # noqa: E402,F401  (registers "vasp")
from alloyflow.workflows.jobs import vasp as V  # noqa: E402

NEB = REAL / "Si_NEB"
MP = REAL / "Si_mp_gga_relax"
ONLY_POTCAR = {"check_inputs": ("potcar",)}
SAME_STRUCTURE = {"check_inputs": ("poscar", "potcar")}


def vasprun(folder: Path) -> Vasprun:
    return Vasprun(folder / "outputs" / "vasprun.xml.gz", parse_dos=False, parse_eigen=False,
                   parse_potcar_file=False)


def elapsed(outcar: Path) -> float:
    return float(Outcar(outcar).run_stats["Elapsed time (sec)"])


def vtst_forces(outcar: Path) -> float:
    """The last "FORCES: max atom, RMS" of VTST in an image's OUTCAR: its max NEB force on an atom, eV/Å."""
    with gzip.open(outcar, "rt") as f:
        values = [float(m.group(1)) for m in re.finditer(r"FORCES: max atom, RMS\s+(\S+)\s+\S+", f.read())]
    assert values, f"no VTST force line in {outcar}"
    return values[-1]


def run(flow, tmp_path):
    from alloyflow.engine import ResultStore, run_flow

    with ResultStore(tmp_path / "out") as store:
        summary = run_flow(flow, store)
        out = store.output(flow.uuid)
    return summary, out


def as_doc(cls, out):
    return cls.model_validate(out.model_dump() if hasattr(out, "model_dump") else out)


def copy_with_nsw(src: Path, dst: Path, nsw: int, vaspruns=("outputs/vasprun.xml.gz",)) -> Path:
    """A copy of a reference folder whose vasprun(s) and output INCAR say NSW = ``nsw`` (nothing else changed)."""
    shutil.copytree(src, dst)
    for rel in vaspruns:
        path = dst / rel
        text = gzip.open(path, "rt").read()
        text, n = re.subn(r'(<i type="int" name="NSW">)\s*\d+(</i>)', rf"\g<1>{nsw:6d}\g<2>", text)
        assert n >= 1
        with gzip.open(path, "wt", compresslevel=1) as f:
            f.write(text)
    incar = dst / "outputs" / "INCAR.gz"
    if incar.exists():
        text = re.sub(r"NSW = \d+", f"NSW = {nsw}", gzip.open(incar, "rt").read())
        with gzip.open(incar, "wt", compresslevel=1) as f:
            f.write(text)
    return dst


@pytest.fixture
def real_vasp(monkeypatch):
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    yield from monkeypatch_vasp(monkeypatch, REAL)


# --- the Si63 vacancy CI-NEB (VTST 4.1), endpoints relaxed -------------------------------------------------------

def si_neb_flow(neb_folder: Path, label: str = "Si vacancy hop"):
    """VaspNebMaker on the endpoints the real NEB ran (its 00 and 04), and the job name -> folder map."""
    ini = Structure.from_file(NEB / "NEB" / "inputs" / "00" / "POSCAR.gz")
    fin = Structure.from_file(NEB / "NEB" / "inputs" / "04" / "POSCAR.gz")
    flow = V.VaspNebMaker(n_images=3).keyed_job(ini, fin, label=label, metadata={"phase": "Si"})
    paths = {f"vasp endpoint {label} initial": NEB / "relax_endpoint_1", f"vasp endpoint {label} final":
             NEB / "relax_endpoint_2", f"vasp neb {label}": neb_folder}
    return flow, paths, ini


@pytest.fixture(scope="module")
def si_neb(tmp_path_factory):
    """The NEB document of the real band (run once for the tests below)."""
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    from alloyflow.workflows.jobs.neb import NebDocument

    tmp = tmp_path_factory.mktemp("si_neb")
    flow, paths, ini = si_neb_flow(NEB / "NEB")
    with pytest.MonkeyPatch.context() as mp:
        gen = monkeypatch_vasp(mp, REAL)
        next(gen)(paths, {name: ONLY_POTCAR for name in paths})
        summary, out = run(flow, tmp)
        next(gen, None)  # monkeypatch_vasp's own clean-up (undo, forget the reference paths)
    return as_doc(NebDocument, out), summary, ini


def test_neb_max_force_is_vtst_neb_force(si_neb):
    """max_force is the NEB force VTST converged (0.007 eV/Å), not the raw DFT force (0.191 eV/Å)."""
    doc, _, _ = si_neb
    outcars = [NEB / "NEB" / "outputs" / f"{k:02d}" / "OUTCAR.gz" for k in (1, 2, 3)]
    vtst = [vtst_forces(p) for p in outcars]
    assert vtst == pytest.approx([0.006963, 0.003988, 0.006949], abs=1e-6)
    assert doc.max_force == pytest.approx(max(vtst), abs=2e-5) and doc.max_force < doc.fmax
    assert doc.metadata["vasp"]["image_max_forces"] == pytest.approx(vtst, abs=2e-5)
    # the stored DFT forces keep their component along the path
    dft = [float(np.linalg.norm(Vasprun(p.with_name("vasprun.xml.gz"), parse_dos=False, parse_eigen=False,
                                        parse_potcar_file=False).ionic_steps[-1]["forces"], axis=1).max())
           for p in outcars]
    assert doc.metadata["vasp"]["image_dft_max_forces"] == pytest.approx(dft, abs=1e-6)
    assert max(dft) == pytest.approx(0.191, abs=1e-3)
    assert doc.metadata["vasp"]["vtst"].startswith("4.1") and doc.metadata["vasp"]["climbing"]
    assert doc.metadata["vasp"]["spring"] == -5.0


def test_neb_energies_barrier_and_steps_match_vasprun(si_neb):
    doc, summary, ini = si_neb
    assert summary.computed == 5 and doc.converged and doc.endpoints_converged and "problems" not in doc.metadata["vasp"]
    ends = [vasprun(NEB / f"relax_endpoint_{k}") for k in (1, 2)]
    images = [Vasprun(NEB / "NEB" / "outputs" / f"{k:02d}" / "vasprun.xml.gz", parse_dos=False, parse_eigen=False,
                      parse_potcar_file=False) for k in (1, 2, 3)]
    expected = [ends[0].final_energy, *[v.final_energy for v in images], ends[1].final_energy]
    assert doc.energies == pytest.approx(expected, abs=1e-6)
    assert doc.climbing_image == 2
    assert doc.forward_barrier == pytest.approx(max(expected) - expected[0], abs=1e-6)
    assert doc.reverse_barrier == pytest.approx(max(expected) - expected[-1], abs=1e-6)
    assert 0.15 < doc.forward_barrier < 0.2  # the Si vacancy hop of this cell
    assert doc.n_steps == max(len(v.ionic_steps) for v in images) == 12
    assert doc.endpoint_force_calls == sum(len(v.ionic_steps) for v in ends)
    # final image positions are the last ionic step's (CONTCAR)
    for k, v in zip((1, 2, 3), images):
        assert np.allclose(doc.images[k].cart_coords, v.final_structure.cart_coords, atol=1e-6)
    # one atom (the vacancy's neighbour) hops; the band keeps one site order
    moved = ini.lattice.get_all_distances(doc.images[0].frac_coords, doc.images[-1].frac_coords).diagonal()
    assert (moved > 1.0).sum() == 1 and doc.hop_distance == pytest.approx(moved.max(), abs=1e-3)
    assert doc.metadata["phase"] == "Si"


def test_neb_elapsed_is_vasps_own_time(si_neb):
    """Endpoints one after the other, then the three images side by side (each OUTCAR: ~660.6 s of one run)."""
    doc, _, _ = si_neb
    images = [elapsed(NEB / "NEB" / "outputs" / f"{k:02d}" / "OUTCAR.gz") for k in (1, 2, 3)]
    ends = [elapsed(NEB / f"relax_endpoint_{k}" / "outputs" / "OUTCAR.gz") for k in (1, 2)]
    # plus the converting job's own fraction of a second
    assert sum(ends) + max(images) <= doc.elapsed_seconds < sum(ends) + max(images) + 5.0
    assert doc.metadata["vasp"]["image_elapsed_seconds"] == pytest.approx(images, abs=1e-3)
    assert doc.metadata["vasp"]["neb_elapsed_seconds"] == pytest.approx(max(images), abs=1e-3)


def test_neb_records_versions(si_neb):
    import atomate2
    import pymatgen.core

    versions = si_neb[0].metadata["vasp"]["versions"]
    assert versions["atomate2"] == atomate2.__version__ and versions["pymatgen"] == pymatgen.core.__version__


def test_unconverged_neb_is_a_document(real_vasp, tmp_path):
    """A band whose images reached NSW (edited copy: NSW = 12, the steps the images took) is flagged, not lost."""
    from alloyflow.workflows.jobs.neb import NebDocument

    folder = copy_with_nsw(NEB / "NEB", tmp_path / "NEB", 12,
                           [f"outputs/{k:02d}/vasprun.xml.gz" for k in (1, 2, 3)])
    flow, paths, _ = si_neb_flow(folder)
    real_vasp(paths, {name: ONLY_POTCAR for name in paths})
    summary, out = run(flow, tmp_path)
    doc = as_doc(NebDocument, out)
    assert summary.computed == 5 and not summary.failed
    assert not doc.converged and doc.endpoints_converged
    assert "NSW = 12" in doc.metadata["vasp"]["problems"]["band"]
    assert len(doc.energies) == 5 and doc.forward_barrier > 0.1


def test_vtst_tags_on_a_vasp_without_vtst_are_named(real_vasp, tmp_path):
    """Edited copy: the images' OUTCARs without VTST's banner lines, as a stock VASP writes them."""
    from alloyflow.workflows.jobs.neb import NebDocument

    folder = tmp_path / "NEB"
    shutil.copytree(NEB / "NEB", folder)
    for k in (1, 2, 3):
        path = folder / "outputs" / f"{k:02d}" / "OUTCAR.gz"
        lines = [ln for ln in gzip.open(path, "rt") if not re.match(r"\s*(VTST:|CHAIN:|NEB:|OPT:)", ln)]
        with gzip.open(path, "wt", compresslevel=1) as f:
            f.writelines(lines)
    flow, paths, _ = si_neb_flow(folder)
    real_vasp(paths, {name: ONLY_POTCAR for name in paths})
    _, out = run(flow, tmp_path)
    doc = as_doc(NebDocument, out)
    msg = doc.metadata["vasp"]["problems"]["vtst"]
    assert not doc.converged and "LCLIMB" in msg and "IOPT" in msg and "no VTST" in msg and "climb=False" in msg
    assert doc.metadata["vasp"]["vtst"] is None and not doc.metadata["vasp"]["climbing"]


def test_neb_forces_reproduce_vtst_without_a_flow():
    """``neb_forces`` alone on the parsed band: VTST's per-image values and its RMS."""
    band = [Structure.from_file(NEB / "NEB" / "outputs" / "00" / "POSCAR.gz")]
    runs = [Vasprun(NEB / "NEB" / "outputs" / f"{k:02d}" / "vasprun.xml.gz", parse_dos=False, parse_eigen=False,
                    parse_potcar_file=False) for k in (1, 2, 3)]
    band += [v.final_structure for v in runs] + [Structure.from_file(NEB / "NEB" / "outputs" / "04" / "POSCAR.gz")]
    ends = [vasprun(NEB / f"relax_endpoint_{k}").ionic_steps[-1]["e_fr_energy"] for k in (1, 2)]
    energies = [ends[0], *[v.ionic_steps[-1]["e_fr_energy"] for v in runs], ends[1]]
    forces = V.neb_forces([s.cart_coords for s in band], energies, [v.ionic_steps[-1]["forces"] for v in runs],
                          band[0].lattice.matrix, spring=5.0, climb=True)
    rms = [float(np.linalg.norm(f) / np.sqrt(len(f))) for f in forces]
    assert [V.max_force(f) for f in forces] == pytest.approx([0.006963, 0.003988, 0.006949], abs=2e-6)
    assert rms == pytest.approx([0.003273, 0.002469, 0.003268], abs=2e-6)  # VTST's RMS column


# --- relaxations and statics ----------------------------------------------------------------------------------------

def test_relax_then_static_mp_gga(real_vasp, tmp_path):
    """MP GGA relax (its second one) -> static: energies, structure, forces, steps; each VASP run timed once."""
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    start = Structure.from_file(MP / "GGA_Relax_2" / "inputs" / "POSCAR.gz")
    flow = V.VaspRelaxMaker().keyed_job(start, "Si")
    real_vasp({"vasp relax Si": MP / "GGA_Relax_2", "vasp static Si": MP / "GGA_Static"},
              {"vasp relax Si": SAME_STRUCTURE, "vasp static Si": SAME_STRUCTURE})
    summary, out = run(flow, tmp_path)
    doc = as_doc(RelaxationDocument, out)
    relax, static = vasprun(MP / "GGA_Relax_2"), vasprun(MP / "GGA_Static")
    assert summary.computed == 3 and doc.converged and "problems" not in doc.metadata["vasp"]
    assert doc.energy == pytest.approx(static.final_energy, abs=1e-6)
    assert np.allclose(doc.structure.lattice.matrix, static.final_structure.lattice.matrix, atol=1e-6)
    assert doc.n_steps == len(relax.ionic_steps)
    assert doc.max_force == pytest.approx(V.max_force(relax.ionic_steps[-1]["forces"]), abs=1e-6)
    times = [elapsed(MP / f / "outputs" / "OUTCAR.gz") for f in ("GGA_Relax_2", "GGA_Static")]
    assert doc.elapsed_seconds == pytest.approx(sum(times), abs=1e-3)  # 4.917 + 5.024 s, not twice that
    assert doc.metadata["vasp"]["versions"]["atomate2"] and doc.metadata["vasp"]["versions"]["pymatgen"]
    assert doc.metadata["vasp"]["incar_overrides"] == {"relax": {}, "static": {}}


def test_relax_timings_count_each_run_once(real_vasp, tmp_path):
    """The first MP relaxation and the static (9.531 + 5.024 s in their OUTCARs), as the issue reported them."""
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    start = Structure.from_file(MP / "GGA_Relax_1" / "inputs" / "POSCAR.gz")
    flow = V.VaspRelaxMaker().keyed_job(start, "Si")
    real_vasp({"vasp relax Si": MP / "GGA_Relax_1", "vasp static Si": MP / "GGA_Static"},
              {"vasp relax Si": SAME_STRUCTURE, "vasp static Si": ONLY_POTCAR})
    _, out = run(flow, tmp_path)
    doc = as_doc(RelaxationDocument, out)
    times = [elapsed(MP / f / "outputs" / "OUTCAR.gz") for f in ("GGA_Relax_1", "GGA_Static")]
    assert times == pytest.approx([9.531, 5.024]) and doc.elapsed_seconds == pytest.approx(14.555, abs=1e-3)


@pytest.mark.parametrize("folder", ["Si_double_relax/relax_1", "Au_adsorption/bulk_relax"])
def test_relax_only(real_vasp, tmp_path, folder):
    """Si double relaxation (first run) and smeared Au bulk: energy sigma -> 0 (not the free energy), steps, forces."""
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    ref = REAL / folder
    start = Structure.from_file(next((ref / "inputs").glob("POSCAR*")))
    flow = V.VaspRelaxMaker(static=False).keyed_job(start, "x")
    real_vasp({"vasp relax x": ref}, {"vasp relax x": SAME_STRUCTURE})
    _, out = run(flow, tmp_path)
    doc = as_doc(RelaxationDocument, out)
    v = vasprun(ref)
    last = v.ionic_steps[-1]
    assert doc.converged and doc.n_steps == len(v.ionic_steps)
    assert doc.energy == pytest.approx(v.final_energy, abs=1e-6) == pytest.approx(last["e_0_energy"], abs=1e-6)
    if "Au" in folder:  # Gaussian smearing of 0.2 eV: free energy and sigma -> 0 differ by 11 meV
        assert abs(last["e_fr_energy"] - doc.energy) > 0.01
    assert np.allclose(doc.structure.lattice.matrix, v.final_structure.lattice.matrix, atol=1e-6)
    assert doc.max_force == pytest.approx(V.max_force(last["forces"]), abs=1e-6)
    assert doc.elapsed_seconds == pytest.approx(elapsed(ref / "outputs" / "OUTCAR.gz"), abs=1e-3)


def test_unconverged_relaxation_is_a_document(real_vasp, tmp_path):
    """The first MP relaxation with NSW = 3 (its step count): VASP stopped at NSW, not at EDIFFG."""
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    ref = copy_with_nsw(MP / "GGA_Relax_1", tmp_path / "relax_nsw3", 3)
    v = vasprun(ref)
    assert not v.converged_ionic and v.converged_electronic  # what pymatgen (and custodian) see
    start = Structure.from_file(MP / "GGA_Relax_1" / "inputs" / "POSCAR.gz")
    flow = V.VaspRelaxMaker(static=False).keyed_job(start, "Si")
    real_vasp({"vasp relax Si": ref}, {"vasp relax Si": SAME_STRUCTURE})
    summary, out = run(flow, tmp_path)
    doc = as_doc(RelaxationDocument, out)
    assert summary.computed == 2 and not summary.failed
    assert not doc.converged and "NSW = 3" in doc.metadata["vasp"]["problems"]["relax"]
    assert doc.n_steps == 3 and doc.energy == pytest.approx(v.final_energy, abs=1e-6)
    assert np.allclose(doc.structure.cart_coords, v.final_structure.cart_coords, atol=1e-6)
    assert np.allclose(doc.structure.lattice.matrix, v.final_structure.lattice.matrix, atol=1e-6)


def test_unconverged_relaxation_runs_its_static_on_jobflow(real_vasp, tmp_path):
    """jobflow's own runner (like FireWorks) honours stop_children: the static and the document still run."""
    from jobflow import JobStore, run_locally
    from maggma.stores import MemoryStore

    from alloyflow.workflows.jobs.relax import RelaxationDocument

    ref = copy_with_nsw(MP / "GGA_Relax_1", tmp_path / "relax_nsw3", 3)
    start = Structure.from_file(MP / "GGA_Relax_1" / "inputs" / "POSCAR.gz")
    flow = V.VaspRelaxMaker().keyed_job(start, "Si")
    real_vasp({"vasp relax Si": ref, "vasp static Si": MP / "GGA_Static"},
              {"vasp relax Si": SAME_STRUCTURE, "vasp static Si": ONLY_POTCAR})
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    responses = run_locally(flow, store=store, create_folders=True, root_dir=tmp_path / "jobs", ensure_success=True)
    assert flow.uuid in responses
    doc = as_doc(RelaxationDocument, store.get_output(flow.uuid))
    assert not doc.converged and set(doc.metadata["vasp"]["problems"]) == {"relax"}
    assert doc.energy == pytest.approx(vasprun(MP / "GGA_Static").final_energy, abs=1e-6)


def test_custodian_accepts_an_ionic_only_unconvergence(tmp_path):
    """The handler alloyflow's makers give custodian: NSW reached -> no correction, so no error after 5 restarts."""
    from custodian.vasp.handlers import UnconvergedErrorHandler

    ref = copy_with_nsw(MP / "GGA_Relax_1", tmp_path / "relax_nsw3", 3)
    run_dir = ref / "outputs"
    with gzip.open(run_dir / "vasprun.xml.gz", "rb") as f:
        (run_dir / "vasprun.xml").write_bytes(f.read())
    assert UnconvergedErrorHandler().check(str(run_dir))  # atomate2's stock handler: restart, then raise
    assert not V.IonicLimitHandler().check(str(run_dir))
    once = V.IonicLimitHandler(ionic_restarts=1)  # one continuation per VASP job, if asked for
    assert once.check(str(run_dir))
    once.ionic_restarts_done = 1  # (what correct() counts)
    assert not once.check(str(run_dir))
    once.n_applied_corrections = 0  # custodian, at the start of the next job
    assert once.check(str(run_dir))
    converged = tmp_path / "converged"
    converged.mkdir()
    with gzip.open(MP / "GGA_Relax_1" / "outputs" / "vasprun.xml.gz", "rb") as f:
        (converged / "vasprun.xml").write_bytes(f.read())
    assert not V.IonicLimitHandler(ionic_restarts=1).check(str(converged))
    for maker in (V.hull_relax_maker(), V.hull_static_maker(), V.neb_endpoint_maker()):
        names = [type(h).__name__ for h in maker.run_vasp_kwargs["handlers"]]
        assert "IonicLimitHandler" in names and "UnconvergedErrorHandler" not in names and len(names) == 11
        assert maker.stop_children_kwargs["handle_unsuccessful"] is False
    assert V.neb_images_maker().stop_children_kwargs["handle_unsuccessful"] is False
