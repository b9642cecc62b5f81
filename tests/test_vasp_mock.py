"""VASP flows through atomate2's mocked VASP: inputs of every job, hull, NEB and barrier flows end to end.

atomate2's ``monkeypatch_vasp`` replaces ``run_vasp`` by a copy of reference
outputs looked up by job name, after checking the job's INCAR, KPOINTS,
POSCAR(s) and POTCAR.spec against the reference inputs. The references in
``tests/data/vasp`` were built by ``tests/data/vasp/fake_vasp.py`` from real
SevenNet-0 relaxations and a real NEB (see its docstring); nothing here runs a
potential.
"""

import importlib.util
from pathlib import Path

import pytest
from pymatgen.io.vasp import Incar, Kpoints

pytest.importorskip("atomate2.vasp")

import alloyflow.calculators.dft  # noqa: E402,F401  (registers "vasp")
from alloyflow.workflows.jobs import vasp as V  # noqa: E402

REF_DIR = Path(__file__).parent / "data" / "vasp"
_spec = importlib.util.spec_from_file_location("fake_vasp", REF_DIR / "fake_vasp.py")
fake_vasp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_vasp)


@pytest.fixture
def mock_vasp(monkeypatch):
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    yield from monkeypatch_vasp(monkeypatch, REF_DIR)


def _incar(ref: str) -> Incar:
    return Incar.from_file(REF_DIR / ref / "inputs" / "INCAR.gz")


def _kpoints(ref: str) -> Kpoints:
    return Kpoints.from_file(REF_DIR / ref / "inputs" / "KPOINTS.gz")


def test_reference_inputs_carry_the_documented_settings():
    """What the reference inputs (= what the makers write) say, against the module's documentation."""
    relax, static = _incar("vasp_relax_LiIn"), _incar("vasp_static_LiIn")
    for incar in (relax, static):
        assert incar["GGA"].upper() == "PE" and incar["ISMEAR"] == 1 and incar["SIGMA"] == 0.1
        assert incar["ENCUT"] == 650 and incar["ISPIN"] == 1 and "KSPACING" not in incar
    assert relax["ISIF"] == 3 and relax["NSW"] == 99 and relax["EDIFFG"] == -0.02
    assert static["NSW"] == 0
    neb, end = _incar("vasp_neb_bcc_Li_hop"), _incar("vasp_endpoint_bcc_Li_hop_initial")
    assert neb["IMAGES"] == fake_vasp.NEB_BAND_IMAGES and neb["LCLIMB"] and neb["IOPT"] == 1 and neb["IBRION"] == 3
    assert neb["ENCUT"] == 520 == end["ENCUT"] and end["ISIF"] == 2 and neb["EDIFFG"] == -0.05
    # Gamma-centred grids from the k-point density: LiIn (a = 4.8 Å primitive) at 6/Å, bcc-Li 2x2x2 at 4/Å
    k = _kpoints("vasp_relax_LiIn")
    assert k.style == Kpoints.supported_modes.Gamma and list(k.kpts[0]) == [10, 10, 10]
    assert list(_kpoints("vasp_neb_bcc_Li_hop").kpts[0]) == [4, 4, 4]
    spec = (REF_DIR / "vasp_relax_LiIn" / "inputs" / "POTCAR.spec.gz")
    import gzip

    assert gzip.open(spec, "rt").read().split() == ["In_d", "Li_sv"]


def test_density_kpoints_matches_gpaw_convention():
    from ase.build import bulk
    from ase.calculators.calculator import kpts2sizeandoffsets
    from pymatgen.io.ase import AseAtomsAdaptor

    for atoms in (bulk("Li", "bcc", a=3.44), bulk("In", "bct", a=3.25, c=4.95), bulk("Li", "bcc", a=3.44, cubic=True)):
        size, _ = kpts2sizeandoffsets(density=6.0, gamma=True, atoms=atoms)
        assert list(V.density_kpoints(AseAtomsAdaptor.get_structure(atoms), 6.0).kpts[0]) == list(size)


def test_plain_neb_has_no_vtst_tags(tmp_path):
    ini, _ = fake_vasp.bcc_li_hop()
    gen = V.neb_images_maker(climb=False).input_set_generator
    gen.num_images = 3
    incar = gen.get_input_set(ini, potcar_spec=True).incar
    assert "LCLIMB" not in incar and "IOPT" not in incar and incar["IBRION"] == 1 and incar["IMAGES"] == 3


def test_keys_depend_on_vasp_settings():
    s, _ = fake_vasp.bcc_li_hop()
    assert V.VaspRelaxMaker().key(s) == V.VaspRelaxMaker().key(s)
    assert V.VaspRelaxMaker().key(s) != V.VaspRelaxMaker(relax_maker=V.hull_relax_maker({"ENCUT": 700})).key(s)
    assert V.VaspRelaxMaker().key(s) != V.VaspRelaxMaker(static=False).key(s)
    ini, fin = fake_vasp.bcc_li_hop()
    assert V.VaspNebMaker().key(ini, fin) != V.VaspNebMaker(climb=False).key(ini, fin)


def test_changed_input_is_caught_by_the_mock(mock_vasp, tmp_path):
    """The mock compares INCARs: a maker with another ENCUT than the reference fails."""
    from alloyflow.engine import JobFailed, ResultStore, run_cached
    from alloyflow.workflows.flows.hull import primitive

    li = fake_vasp.hull_phases()[0]
    flow = V.VaspRelaxMaker(relax_maker=V.hull_relax_maker({"ENCUT": 700})).keyed_job(primitive(li.structure), "Li")
    mock_vasp(fake_vasp.reference_paths([("Li", flow)]) | {"vasp relax Li": "vasp_relax_Li"})
    with ResultStore(tmp_path) as store, pytest.raises(JobFailed, match="ENCUT"):
        run_cached(flow, store)


def test_hull_flow_through_mocked_vasp(mock_vasp, tmp_path):
    from alloyflow.analysis.hull import build_hull
    from alloyflow.engine import ResultStore, run_cached
    from alloyflow.workflows.flows.hull import HullMaker, entries_from_documents
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    flow = HullMaker(relax_maker=V.VaspRelaxMaker()).make(fake_vasp.hull_phases())
    mock_vasp(fake_vasp.reference_paths([(f.name, f) for f in flow.jobs]))
    with ResultStore(tmp_path) as store:
        summary = run_cached(flow, store)
        assert summary.computed == 9  # 3 phases x (relax, static, convert)
        outputs = [store.output(f.uuid) for f in flow.jobs]
        docs = [RelaxationDocument.model_validate(o if isinstance(o, dict) else o.model_dump()) for o in outputs]
        again = run_cached(HullMaker(relax_maker=V.VaspRelaxMaker()).make(fake_vasp.hull_phases()), store)
    assert again.computed == 0 and again.reused == 9  # keyed: rebuilt flows find every job
    assert [d.label for d in docs] == ["Li", "In", "LiIn"]
    for d in docs:
        assert d.calculator["name"] == "vasp" and d.calculator["kind"] == "dft" and d.converged
        assert d.metadata["vasp"]["incar"]["ENCUT"] == 650 and d.relax_cell and d.n_steps >= 1
    hull = build_hull(entries_from_documents(docs), "Li-In")
    liin = next(p for p in hull.phases if p.formula == "LiIn")
    # the fake VASP ran SevenNet-0: its LiIn formation energy is about -0.27 eV/atom
    assert -0.32 < liin.formation_energy_per_atom < -0.22 and liin.stable


def test_neb_flow_through_mocked_vasp(mock_vasp, tmp_path):
    from alloyflow.engine import ResultStore, run_cached
    from alloyflow.workflows.jobs.neb import NebDocument

    ini, fin = fake_vasp.bcc_li_hop()
    maker = V.VaspNebMaker(n_images=fake_vasp.NEB_BAND_IMAGES)
    flow = maker.keyed_job(ini, fin, label="bcc Li hop", metadata={"phase": "Li"})
    mock_vasp(fake_vasp.reference_paths([("hop", flow)]))
    with ResultStore(tmp_path) as store:
        summary = run_cached(flow, store)
        out = store.output(flow.uuid)
    assert summary.computed == 5  # two endpoints, images, NEB, convert
    doc = NebDocument.model_validate(out.model_dump() if hasattr(out, "model_dump") else out)
    assert doc.calculator["name"] == "vasp" and doc.n_images == 3 and len(doc.energies) == len(doc.images) == 5
    assert doc.converged and doc.endpoints_converged and doc.climbing_image == 2
    # a symmetric hop: equal endpoints; the fake VASP's SevenNet-0 barrier in this 15-atom cell is ~0.14 eV
    assert abs(doc.endpoint_asymmetry) < 0.01 and 0.05 < doc.forward_barrier < 0.3
    # images come back in the input's site order: the hopping atom is the one that moves
    moved = [ini.lattice.get_distance_and_image(a.frac_coords, b.frac_coords)[0] > 1.0
             for a, b in zip(ini, doc.images[-1])]
    assert sum(moved) == 1 and 1.5 < doc.hop_distance < 3.5
    assert doc.metadata["phase"] == "Li" and "neb_method" in doc.metadata["vasp"]
    # max_force: the NEB force recomputed from vasprun.xml's DFT forces = the fake VTST's own FORCES lines
    # (ASE's improved-tangent NEB, the same spring and climbing terms)
    import gzip
    import re

    vtst = [float(re.findall(r"FORCES: max atom, RMS\s+(\S+)", gzip.open(
        REF_DIR / "vasp_neb_bcc_Li_hop" / "outputs" / f"{k:02d}" / "OUTCAR.gz", "rt").read())[-1]) for k in (1, 2, 3)]
    assert doc.metadata["vasp"]["image_max_forces"] == pytest.approx(vtst, abs=1e-5)
    assert doc.max_force == pytest.approx(max(vtst), abs=1e-5) and doc.max_force <= doc.fmax
    assert doc.metadata["vasp"]["vtst"] and doc.metadata["vasp"]["climbing"]



def test_refine_flow_through_mocked_vasp(mock_vasp, tmp_path):
    """DFT//ML on HPC: VASP statics on the band's endpoints and climbing image, then the same RefinedBarrier."""
    from alloyflow.engine import ResultStore, run_cached
    from alloyflow.workflows.jobs.refine import RefinedBarrier, format_refined
    from alloyflow.workflows.jobs.vasp_refine import VaspRefineMaker

    band = fake_vasp.linear_band()
    flow = VaspRefineMaker(symmetric_endpoints=False).make(band)
    mock_vasp(fake_vasp.reference_paths([("refine", flow)]))
    with ResultStore(tmp_path) as store:
        summary = run_cached(flow, store)
        out = store.output(flow.uuid)
        again = run_cached(VaspRefineMaker(symmetric_endpoints=False).make(band), store)
        # the hop is symmetric: by default the final endpoint takes the initial one's static
        sym = VaspRefineMaker().make(band)
        statics = [j.name for j, _ in sym.iterflow() if j.name.startswith("vasp static")]
        shared = run_cached(sym, store)
        copied = store.output(sym.uuid)
    assert summary.computed == 4 and again.computed == 0  # three statics + the result; then all reused
    r = RefinedBarrier.model_validate(out.model_dump() if hasattr(out, "model_dump") else out)
    assert [img.index for img in r.energies] == [0, band.climbing_image, 4] and r.converged and not r.failures
    assert r.dft_calculator["name"] == "vasp" and r.dft_calculator["settings"]["incar"]["ENCUT"] == 520
    assert r.ml_calculator["name"] == "mock"
    # the fake VASP is SevenNet-0: a linear (unrelaxed) bcc-Li hop costs far more than the relaxed ~0.14 eV
    assert abs(r.dft_forward_barrier - r.dft_reverse_barrier) < 0.02 and 0.1 < r.dft_forward_barrier < 3.0
    assert "DFT//ML (VASP-PBE" in format_refined(r)
    c = RefinedBarrier.model_validate(copied.model_dump() if hasattr(copied, "model_dump") else copied)
    assert len(statics) == 2 and shared.computed == 1  # its two statics were stored; only the result is new
    assert c.n_symmetry_copies == 1 and c.energies[-1].index == 4 and c.energies[-1].same_as == 0
    # VASP's own static of the final endpoint agrees with the copy
    assert c.energies[-1].dft_energy == pytest.approx(r.energies[-1].dft_energy, abs=1e-3)
    assert c.dft_forward_barrier == pytest.approx(r.dft_forward_barrier, abs=1e-9)


def test_barrier_flow_through_mocked_vasp(mock_vasp, tmp_path):
    """The barrier flow of bcc Li with VASP: relax, plan (NEB jobs made at run time), endpoints, NEB, collect."""
    from alloyflow.analysis.migration import BarrierResult
    from alloyflow.engine import ResultStore, run_flow

    flow = fake_vasp.barrier_flow()
    # the NEB jobs do not exist yet: their references are named after the hops planned in the reference cell
    paths = fake_vasp.barrier_reference_paths()
    assert paths["vasp relax Li"] == "vasp_relax_Li" and "vasp neb Li hop 0" in paths  # hull's relax reused
    mock_vasp(paths)
    with ResultStore(tmp_path) as store:
        summary = run_flow(flow, store)
        r = store.document(flow.output.uuid, BarrierResult)
        again = run_flow(fake_vasp.barrier_flow(), store)
    # relax, static, convert; two endpoints, images, NEB, convert (planning and collecting are not counted)
    assert summary.computed == 8 and not summary.failed
    # keyed: a rebuilt flow finds its relaxation and its finished planning job (hence every NEB) in the store
    assert again.computed == 0 and again.assembled == 0 and again.reused == 3
    assert r.calculator["name"] == "vasp" and r.calculator["kind"] == "dft"
    assert r.phase == "Li" and r.mode == "vacancy" and r.supercell.natoms == 14 and r.settings["n_images"] == 3
    assert len(r.hops) == 1
    hop = r.hops[0]
    assert hop.converged and hop.n_images == 3 and len(hop.energies) == 5 and 2.9 < hop.length < 3.1
    # the fake VASP's SevenNet-0 barrier of the nearest-neighbour vacancy hop in this 14-atom cell: ~0.14 eV
    assert 0.05 < hop.forward_barrier < 0.3 and abs(hop.endpoint_asymmetry) < 0.01
    assert set(r.percolation) == {"1d", "2d", "3d"}
    # the nearest-neighbour hops of bcc connect every site in 3D: one threshold, the hop's cost
    assert all(v is not None and 0.05 < v < 0.3 for v in r.percolation.values())
    assert r.percolation["3d"] == pytest.approx(hop.cost) and r.percolation_hops["3d"] == hop.id
    assert not r.hops_left_out and not r.warnings


def test_result_neutral_incar_tags_stay_out_of_keys():
    """Parallelisation and output-file tags change how VASP runs, not its numbers: same keys, same stored results."""
    from alloyflow.workflows.jobs.vasp_refine import neb_static_maker

    s, fin = fake_vasp.bcc_li_hop()
    neutral = {"NCORE": 8, "KPAR": 2, "NPAR": 4, "NSIM": 8, "LWAVE": True, "LCHARG": True, "LPLANE": False}
    base = V.VaspRelaxMaker().key(s)
    assert V.VaspRelaxMaker(relax_maker=V.hull_relax_maker(neutral), static_maker=V.hull_static_maker(neutral)).key(s) == base
    assert V.VaspStaticMaker(static_maker=V.hull_static_maker(neutral)).key(s) == V.VaspStaticMaker().key(s)
    assert V.VaspNebMaker(incar=neutral).key(s, fin) == V.VaspNebMaker().key(s, fin)
    assert V.inputs_summary(neb_static_maker(neutral)) == V.inputs_summary(neb_static_maker())
    for tag, value in {"ENCUT": 700, "LREAL": "Auto", "PREC": "Normal", "ALGO": "Fast", "ISYM": 0, "SIGMA": 0.05}.items():
        assert V.VaspRelaxMaker(relax_maker=V.hull_relax_maker({tag: value})).key(s) != base, tag
        assert V.VaspNebMaker(incar={tag: value}).key(s, fin) != V.VaspNebMaker().key(s, fin), tag
    # the INCAR written still carries them
    incar = V.hull_relax_maker(neutral).input_set_generator.get_input_set(s, potcar_spec=True).incar
    assert incar["NCORE"] == 8 and incar["KPAR"] == 2 and incar["LWAVE"] is True


def test_incar_overrides_run_and_are_recorded(mock_vasp, tmp_path):
    """makers_for("vasp", incar=...) reaches the INCAR; a result-neutral one keeps the stored result's key."""
    from alloyflow.engine import ResultStore, run_cached
    from alloyflow.workflows.flows.hull import primitive
    from alloyflow.workflows.jobs.backends import makers_for
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    li = fake_vasp.hull_phases()[0]
    flow = makers_for("vasp", incar={"NCORE": 4}).relax.keyed_job(primitive(li.structure), "Li")
    assert flow.uuid == V.VaspRelaxMaker().keyed_job(primitive(li.structure), "Li").uuid
    paths = fake_vasp.reference_paths([("Li", flow)])
    mock_vasp(paths, {name: {"incar_exclude": ["NCORE"]} for name in paths})
    with ResultStore(tmp_path) as store:
        run_cached(flow, store)
        doc = store.document(flow.uuid, RelaxationDocument)
    relax = next(j for j, _ in flow.iterflow() if j.name == "vasp relax Li")
    assert relax.maker.input_set_generator.get_input_set(primitive(li.structure), potcar_spec=True).incar["NCORE"] == 4
    assert doc.metadata["vasp"]["incar_overrides"] == {"relax": {"NCORE": 4}, "static": {"NCORE": 4}}
    assert doc.metadata["vasp"]["versions"]["atomate2"]


def test_makers_for_incar_and_climb():
    from alloyflow.workflows.jobs.backends import makers_for

    m = makers_for("vasp", incar={"ENCUT": 700, "NSW": 150}, climb=False, fmax=0.03)
    assert m.relax.relax_maker.input_set_generator.user_incar_settings["ENCUT"] == 700
    assert m.relax.relax_maker.input_set_generator.user_incar_settings["NSW"] == 150
    static = m.relax.static_maker.input_set_generator.user_incar_settings
    assert static["ENCUT"] == 700 and static["NSW"] == 0  # a static never takes ionic steps
    assert m.static.static_maker.input_set_generator.user_incar_settings["NSW"] == 0
    assert not m.neb.climb and m.neb.incar["ENCUT"] == 700 and m.neb.fmax == 0.03
    ini, _ = fake_vasp.bcc_li_hop()
    gen = m.neb.makers()[1].input_set_generator
    gen.num_images = 3
    incar = gen.get_input_set(ini, potcar_spec=True).incar
    assert not {"LCLIMB", "IOPT"} & set(incar) and incar["IBRION"] == 1 and incar["ENCUT"] == 700
    assert makers_for("vasp").neb.climb and makers_for("mock", climb=False).neb.climb is False


def test_parse_incar_types_values():
    from alloyflow.workflows.jobs.backends import parse_incar

    got = parse_incar(["ENCUT=700", "ediff=1e-7", "LREAL=.FALSE.", "LWAVE=T", "ALGO=Fast", "SIGMA=0.05",
                       "KSPACING=None", "EDIFFG=-1.0D-2"])
    assert got == {"ENCUT": 700, "EDIFF": 1e-7, "LREAL": False, "LWAVE": True, "ALGO": "Fast", "SIGMA": 0.05,
                   "KSPACING": None, "EDIFFG": -0.01}
    assert type(got["ENCUT"]) is int and type(got["SIGMA"]) is float
    for bad in ("ENCUT", "=700", "ENCUT=", "EN CUT=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_incar([bad])


def test_submit_cli_passes_incar_and_no_climb(monkeypatch, capsys):
    """alloyflow submit {hull,barriers,study} --incar K=V (repeatable) --no-climb reach the submit functions."""
    from alloyflow import cli
    from alloyflow.commands import submit

    seen = {}

    class Done:
        def message(self):
            return "submitted"

    def fake(kind):
        def record(*args, **kwargs):
            seen[kind] = kwargs
            return Done()
        return record

    for kind in ("hull", "barriers", "study"):
        monkeypatch.setattr(submit, f"submit_{kind}", fake(kind))
    base = ["--launchpad", "lp.yaml", "--calculator", "vasp", "--incar", "ENCUT=700", "--incar", "NCORE=8"]
    assert cli.main(["submit", "hull", "Li-In", *base]) == 0
    assert cli.main(["submit", "barriers", "LiIn", "--system", "Li-In", *base, "--no-climb"]) == 0
    assert cli.main(["submit", "study", "Li-In", *base, "--no-climb"]) == 0
    assert seen["hull"]["incar"] == {"ENCUT": 700, "NCORE": 8} and "climb" not in seen["hull"]
    assert seen["barriers"]["incar"] == {"ENCUT": 700, "NCORE": 8} and seen["barriers"]["climb"] is False
    assert seen["study"]["incar"] == {"ENCUT": 700, "NCORE": 8} and seen["study"]["climb"] is False
    assert cli.main(["submit", "hull", "Li-In", "--launchpad", "lp.yaml", "--calculator", "mock",
                     "--incar", "ENCUT=700"]) == 1
    assert "--incar and --no-climb are for VASP" in capsys.readouterr().err
    assert cli.main(["submit", "hull", "Li-In", "--launchpad", "lp.yaml", "--calculator", "vasp",
                     "--incar", "ENCUT"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_submit_hull_flow_carries_incar():
    """The flow submit_hull sends: its VASP relaxations carry the override, and hull_documents finds them again."""
    from alloyflow.commands.submit import hull_flow, incar_relax_maker

    flow = hull_flow("Li-In", "vasp", phases=["LiIn"], relax_maker=incar_relax_maker("vasp", {"ENCUT": 700}))
    default = hull_flow("Li-In", "vasp", phases=["LiIn"])
    relax = [j for j, _ in flow.iterflow() if j.name.startswith("vasp relax")]
    assert relax and all(j.maker.input_set_generator.user_incar_settings["ENCUT"] == 700 for j in relax)
    assert {j.uuid for j in flow.jobs} != {j.uuid for j in default.jobs}  # ENCUT is in the key


def test_submit_barriers_and_study_build_flows_with_incar(monkeypatch):
    """The flows submit_barriers and submit_study send with --incar/--no-climb: relaxations and NEB makers carry them."""
    from alloyflow.commands import submit
    from alloyflow.workflows.flows.study import StudySettings

    sent = []
    monkeypatch.setattr(submit, "_submit_and_record", lambda flow, *a, **k: sent.append(flow))
    submit.submit_barriers("Li", "lp.yaml", calculator="vasp", system="Li-In", incar={"ENCUT": 700}, climb=False,
                           n_images=3, min_image_distance=7.0, max_hops=1)
    submit.submit_study(StudySettings(systems=["Li-In"], calculator="vasp", search=False), "lp.yaml", incar={"ENCUT": 700},
                        climb=False)
    plain = []
    monkeypatch.setattr(submit, "_submit_and_record", lambda flow, *a, **k: plain.append(flow))
    submit.submit_barriers("Li", "lp.yaml", calculator="vasp", system="Li-In", n_images=3, min_image_distance=7.0,
                           max_hops=1)
    for flow in sent:
        relax = [j for j, _ in flow.iterflow() if j.name.startswith("vasp relax")]
        assert relax and all(j.maker.input_set_generator.user_incar_settings["ENCUT"] == 700 for j in relax)
    plan = next(j for j, _ in sent[0].iterflow() if (j.metadata or {}).get("alloyflow_label", "").startswith("plan hops"))
    neb = next(a for a in plan.function_args if type(a).__name__ == "VaspNebMaker")
    assert neb.climb is False and neb.incar["ENCUT"] == 700
    assert {j.uuid for j in sent[0].jobs} != {j.uuid for j in plain[0].jobs}
