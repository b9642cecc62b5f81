"""The hardening issue: untrusted output folders, degenerate supercells, oversized cells, bad numbers, bad CIFs.

Each test failed on the code before its fix (see the docstrings).
"""

from __future__ import annotations

import hashlib
import shutil

import pytest

from alloyflow.cli import main


class _RunsCode:
    """Unpickling this creates ``marker``: what a hostile checkpoint could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _hostile_checkpoint(path, marker):
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": {"payload": _RunsCode(marker)}, "model_state_dict": {}}, path)
    return path


def _stderr_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1, err
    return err


def _shipped_7net0():
    sevenn_util = pytest.importorskip("sevenn.util")
    return sevenn_util.pretrained_name_to_path("7net-0")


# --------------------------------------------------------------------------- 1. code execution from --out


def test_hostile_finetune_json_in_out_neither_registers_nor_executes(tmp_path):
    """Before: a finetune.json in <out>/potentials naming 'sevennet-mf0' replaced the built-in potential at
    start-up, and choosing it unpickled the folder's checkpoint (creating the marker)."""
    pytest.importorskip("sevenn")
    from alloyflow.calculators import get_calculator, get_spec
    from alloyflow.ml.finetune import FineTuneResult

    out, marker = tmp_path / "out", tmp_path / "pwned"
    ckpt = _hostile_checkpoint(out / "potentials" / "sevennet-mf0" / "checkpoint.pth", marker)
    meta = FineTuneResult(name="sevennet-mf0", registry_name="sevennet-mf0", checkpoint=str(ckpt),
                          sha256=hashlib.sha256(ckpt.read_bytes()).hexdigest(), base_model="7net-0",
                          label_calculator={}, n_train=1, n_val=1,
                          epochs=1, lr=1e-4, errors={}, train_seconds=0.0)
    (ckpt.parent / "finetune.json").write_text(meta.model_dump_json())
    builtin = get_spec("sevennet-mf0")

    assert main(["barriers", "--table", "Li", "--calculator", "sevennet-mf0", "--out", str(out)]) == 0
    spec = get_spec("sevennet-mf0")
    assert spec is builtin and spec.model == "SevenNet-MF-0 (PBE modal)" and str(ckpt) not in spec.description
    get_calculator("sevennet-mf0")  # choosing it builds the shipped 7net-mf-0
    assert not marker.exists()


def test_explicit_hostile_potential_is_refused_without_running_it(tmp_path, capsys):
    """Before: there was no --potential (exit 2); sevenn's own loader would unpickle it (weights_only=False)."""
    pytest.importorskip("sevenn")
    marker = tmp_path / "pwned"
    evil = _hostile_checkpoint(tmp_path / "li-evil.pth", marker)
    code = main(["barriers", "Li", "--calculator", "mock", "--potential", str(evil), "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 1
    err = _stderr_line(capsys)
    assert "weights_only=True" in err and "pickles exec" in err
    assert not marker.exists() and not (tmp_path / "o" / "store").exists()


def test_explicit_potential_loads_weights_only_and_predicts_like_sevenn(tmp_path):
    """--potential PATH: the named checkpoint is a calculator, read with weights_only=True (same numbers)."""
    from ase.build import bulk

    from alloyflow.calculators import calculator_info, get_calculator
    from alloyflow.calculators.user import register_potential_file, sha256_of

    ckpt = tmp_path / "li-test" / "checkpoint.pth"
    ckpt.parent.mkdir()
    shutil.copy(_shipped_7net0(), ckpt)
    name = register_potential_file(ckpt)
    assert name == "li-test" and sha256_of(ckpt)[:12] in calculator_info(name)["model"]
    atoms = bulk("Li", "bcc", 3.44, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=1)
    energies = []
    for calc in ("li-test", "sevennet"):
        a = atoms.copy()
        a.calc = get_calculator(calc)
        energies.append(a.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], abs=1e-6)


def test_no_user_potential_may_take_a_builtin_name(tmp_path, capsys):
    """Before: only five names were protected, so a checkpoint registered as 'sevennet-mf0' replaced it."""
    from alloyflow.calculators import CalculatorError, get_spec
    from alloyflow.ml.finetune import register_finetuned

    ckpt = tmp_path / "sevennet-mf0" / "checkpoint.pth"
    ckpt.parent.mkdir()
    shutil.copy(_shipped_7net0(), ckpt)
    with pytest.raises(CalculatorError, match="built-in"):
        register_finetuned("sevennet-mf0", ckpt)
    assert get_spec("sevennet-mf0").model == "SevenNet-MF-0 (PBE modal)"
    code = main(["barriers", "Li", "--potential", str(ckpt), "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 1 and "built-in" in _stderr_line(capsys)


def test_trusted_digest_is_the_record_not_the_folder(tmp_path):
    """A recorded checkpoint replaced later (with a matching finetune.json) is refused, unread; an unrecorded
    folder potential is refused by load_finetuned. Before: both digests came from the folder itself."""
    pytest.importorskip("sevenn")
    from alloyflow.calculators import CalculatorError, get_calculator
    from alloyflow.calculators.user import register_trusted_potentials, sha256_of, trust_potential
    from alloyflow.ml.finetune import FineTuneResult, load_finetuned

    out, marker = tmp_path / "out", tmp_path / "pwned"
    ckpt = out / "potentials" / "li-rec" / "checkpoint.pth"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(_shipped_7net0(), ckpt)
    trust_potential("li-rec", ckpt, sha256_of(ckpt))
    _hostile_checkpoint(ckpt, marker)  # replaced after training, finetune.json rewritten to match
    meta = FineTuneResult(name="li-rec", registry_name="li-rec", checkpoint=str(ckpt), sha256=sha256_of(ckpt),
                          base_model="7net-0", label_calculator={}, n_train=1, n_val=1, epochs=1, lr=1e-4,
                          errors={}, train_seconds=0.0)
    (ckpt.parent / "finetune.json").write_text(meta.model_dump_json())

    assert "li-rec" in register_trusted_potentials(out)
    with pytest.raises(CalculatorError, match="changed since"):
        get_calculator("li-rec")
    with pytest.raises(CalculatorError, match="does not match the trusted record"):
        load_finetuned(out, "li-rec")
    stray = out / "potentials" / "li-stray"
    shutil.copytree(ckpt.parent, stray)
    with pytest.raises(CalculatorError, match="none recorded"):
        load_finetuned(out, "li-stray")
    assert not marker.exists()


# --------------------------------------------------------------------------- 2. vacancy images closer than the hop


def test_barriers_refuses_a_cell_whose_images_are_closer_than_the_hop(tmp_path, capsys):
    """Before: a 1-atom vacancy cell and a converged 0 meV barrier, exit 0."""
    out = tmp_path / "out"
    code = main(["barriers", "Li", "--calculator", "mock", "--min-image-distance", "3", "--out", str(out),
                 "--no-progress"])
    assert code == 1
    err = _stderr_line(capsys)
    assert err.startswith("alloyflow barriers: error: the vacancy supercell's periodic images are")
    assert "Å apart" in err and "margin" in err and "--min-image-distance" in err
    assert not out.exists()  # refused before any job (or store) existed


def test_dilute_barriers_refuse_a_host_cell_too_small_for_the_hop(tmp_path, capsys):
    """Before: --host-sites 4 gave an In host whose Li sat next to its own images, and ran."""
    code = main(["barriers", "In", "--dilute", "--host-sites", "4", "--calculator", "mock",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    err = _stderr_line(capsys)
    assert "dilute-Li supercell's periodic images" in err and "--host-sites" in err
    assert not (tmp_path / "out").exists()


def test_hop_endpoints_check_each_hop_against_the_image_distance():
    from pymatgen.core import Lattice, Structure

    from alloyflow.structures.migration import distinct_hops, vacancy_hop_endpoints
    from alloyflow.structures.supercells import IMAGE_MARGIN, check_image_distance, vacancy_supercell_matrix

    sc = Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]])  # hops 3.00 and 4.24 Å
    hops = distinct_hops(sc, max_length=4.3)
    small = vacancy_supercell_matrix(sc, 5.0)  # 4 atoms, images 5.196 Å apart: enough for 3.00 + 1.5, not 4.24 + 1.5
    assert hops[0].length + IMAGE_MARGIN < small.min_image_distance < hops[1].length + IMAGE_MARGIN
    vacancy_hop_endpoints(sc, hops[0], supercell=small)
    with pytest.raises(ValueError, match=r"5\.20 Å apart, closer than the 4\.24 Å hop plus a 1\.5 Å margin"):
        vacancy_hop_endpoints(sc, hops[1], supercell=small)
    with pytest.raises(ValueError, match="nearest-neighbour"):
        vacancy_supercell_matrix(sc, 3.0)
    check_image_distance(3.0 + IMAGE_MARGIN, 3.0)  # exactly hop + margin is enough


# --------------------------------------------------------------------------- 3. atom limit


def test_atom_limit_refuses_a_large_supercell_with_the_memory_estimate(tmp_path, capsys, monkeypatch):
    """Before: no limit but a hard-coded 600 in the supercell search; 39 atoms ran whatever the machine."""
    monkeypatch.setenv("ALLOYFLOW_MAX_ATOMS", "20")
    code = main(["barriers", "Li", "--calculator", "mock", "--min-image-distance", "10", "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 1
    err = _stderr_line(capsys)
    assert "more than the limit of 20" in err and "GB per force call" in err and "ALLOYFLOW_MAX_ATOMS" in err
    assert not (tmp_path / "o").exists()


def test_atom_limit_guards_every_keyed_structure_job(monkeypatch):
    """Before: a relaxation of any size became a job."""
    from pymatgen.core import Lattice, Structure

    from alloyflow.workflows.jobs.relax import RelaxMaker

    big = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (3, 3, 3)  # 54 atoms
    RelaxMaker(calculator="mock").keyed_job(big, label="big Li")
    monkeypatch.setenv("ALLOYFLOW_MAX_ATOMS", "50")
    with pytest.raises(ValueError, match=r"big Li \(Li\) has 54 atoms, more than the limit of 50 \(about .* GB"):
        RelaxMaker(calculator="mock").keyed_job(big, label="big Li")

    from alloyflow.structures.limits import DEFAULT_MAX_ATOMS, estimated_memory_gb, max_atoms

    monkeypatch.delenv("ALLOYFLOW_MAX_ATOMS")
    assert max_atoms() == DEFAULT_MAX_ATOMS and 1 < estimated_memory_gb(DEFAULT_MAX_ATOMS) < 8
    monkeypatch.setenv("ALLOYFLOW_MAX_ATOMS", "lots")
    with pytest.raises(ValueError, match="ALLOYFLOW_MAX_ATOMS must be a positive integer"):
        max_atoms()


# --------------------------------------------------------------------------- 4. numeric options


@pytest.mark.parametrize("option, value, message", [
    ("--fmax", "-1", "must be > 0"),
    ("--fmax", "0", "must be > 0"),
    ("--fmax", "nan", "not a finite number"),
    ("--images", "0", "must be an integer >= 1"),
    ("--max-hops", "-1", "must be an integer >= 0"),
    ("--threads", "-2", "must be an integer >= 1"),
    ("--min-image-distance", "0", "must be > 0"),
    ("--images", "2.5", "is not an integer"),
])
def test_numeric_options_are_refused_by_argparse(option, value, message, capsys):
    """Before: each was accepted (--fmax -1 started a NEB that could never converge, --threads -2 set no threads)."""
    from alloyflow.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["barriers", "Li", option, value])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse: usage, then one error line
    assert last.startswith(f"alloyflow barriers: error: argument {option}: ") and message in last, last


def test_numeric_options_keep_their_valid_values():
    from alloyflow.cli import build_parser

    args = build_parser().parse_args(["barriers", "Li", "--fmax", "0.02", "--images", "1", "--max-hops", "0",
                                      "--threads", "2", "--min-image-distance", "7.5"])
    assert (args.fmax, args.images, args.max_hops, args.threads, args.min_image_distance) == (0.02, 1, 0, 2, 7.5)


# --------------------------------------------------------------------------- 5. overlapping atoms, disordered CIFs


_CIF = """data_{name}
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
_symmetry_Int_Tables_number 1
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
{sites}
"""


def _cif_folder(tmp_path, name, sites):
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.cif").write_text(_CIF.format(name=name, sites=sites))
    return folder


def test_overlapping_atoms_are_refused_naming_the_sites(tmp_path, capsys):
    """Before: a Li 0.20 Å from a Sn was read, listed and relaxed."""
    folder = _cif_folder(tmp_path, "LiSn_overlap", "Li1 Li 0 0 0 1\nSn1 Sn 0.5 0.5 0.5 1\nLi2 Li 0.55 0.5 0.5 1")
    assert main(["phases", "Li-Sn", "--structures", str(folder)]) == 1
    err = _stderr_line(capsys)
    assert "LiSn_overlap.cif" in err and "0.20 Å apart" in err and "overlapping atoms" in err
    assert "(Li at 0.550 0.500 0.500)" in err and "(Sn at 0.500 0.500 0.500)" in err


def test_partially_occupied_cif_says_how_to_order_it(tmp_path, capsys):
    """Before: listed without complaint, then a traceback (AttributeError: 'specie') in the first relaxation."""
    folder = _cif_folder(tmp_path, "LiSn_disordered", "Li1 Li 0 0 0 0.5\nSn1 Sn 0 0 0 0.5\nSn2 Sn 0.5 0.5 0.5 1")
    assert main(["phases", "Li-Sn", "--structures", str(folder)]) == 1
    err = _stderr_line(capsys)
    assert "partially occupied" in err and "OrderDisorderedStructureTransformation" in err


def test_bundled_library_has_no_overlaps():
    from alloyflow.structures import StructureLibrary
    from alloyflow.structures.library import check_overlaps

    for phase in StructureLibrary().all():
        check_overlaps(phase.structure, where=phase.name)


# --------------------------------------------------------------------------- 6. stale outputs


def test_hull_without_voltage_curve_removes_the_earlier_voltage_files(tmp_path, capsys):
    """Before: voltage.json/.png of an earlier run survived a run without a voltage curve, and the report
    quoted that stale average voltage beside 'no voltage curve'."""
    out = tmp_path / "out"
    base = ["hull", "Li-In", "--calculator", "mock", "--out", str(out), "--no-progress"]
    assert main([*base, "--phases", "LiIn"]) == 0
    system = out / "Li-In"
    assert (system / "voltage.json").exists() and (system / "voltage.png").exists()
    assert main([*base, "--phases", "Li", "In"]) == 0  # elements only: no voltage curve
    assert "no voltage curve" in capsys.readouterr().out
    assert not (system / "voltage.json").exists() and not (system / "voltage.png").exists()
    assert main(["report", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "no voltage curve" in report and "average" not in report.lower()


def _barrier_result(hop_ids):
    from alloyflow.analysis.migration import BarrierResult, HopBarrier, SupercellInfo

    hops = [HopBarrier(id=i, length=3.0 + i, forward_barrier=0.1, energies=[0.0, 0.1, 0.0], converged=True)
            for i in hop_ids]
    return BarrierResult(phase="LiIn", calculator={"label": "mock"}, hops=hops,
                         supercell=SupercellInfo(natoms=15, min_image_distance=6.0,
                                                 matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]]))


def test_barrier_outputs_remove_profiles_of_hops_that_no_longer_exist(tmp_path):
    """Before: profile_LiIn_2.png of an earlier run with more hops stayed beside the new barriers.json."""
    from alloyflow.io.barriers import write_barrier_outputs

    write_barrier_outputs(tmp_path, _barrier_result([0, 1, 2]))
    assert sorted(p.name for p in tmp_path.glob("profile_*.png")) == [f"profile_LiIn_{i}.png" for i in (0, 1, 2)]
    files = write_barrier_outputs(tmp_path, _barrier_result([0, 1]))
    assert sorted(p.name for p in tmp_path.glob("profile_*.png")) == ["profile_LiIn_0.png", "profile_LiIn_1.png"]
    assert all(p.exists() for p in files.values())


def test_thermo_outputs_remove_an_earlier_voltage_plot(tmp_path, monkeypatch):
    """Before: voltage_T.png of an earlier run stayed when the new result had no voltage curve."""
    import alloyflow.io.thermo as thermo_io
    from alloyflow.analysis.thermo import ThermoResult

    monkeypatch.setattr(thermo_io, "plot_thermo_hull", lambda result, path: path.write_bytes(b"png"))
    (tmp_path / "voltage_T.png").write_bytes(b"stale")
    result = ThermoResult(system="Li-In", temperature=300.0, calculator={"label": "mock"}, method="mock",
                          phases=[], stable_0K=[], stable_T=[])
    files = thermo_io.write_thermo_outputs(tmp_path, result)
    assert "voltage_png" not in files and not (tmp_path / "voltage_T.png").exists()


# --------------------------------------------------------------------------- 7. inputs silently ignored


def test_unknown_phase_name_is_a_one_line_error_listing_the_known_ones(tmp_path, capsys):
    """Before: --phases LiXx matched nothing and the hull of the elements alone was computed, exit 0."""
    out = tmp_path / "out"
    assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "LiXx", "--out", str(out), "--no-progress"]) == 1
    err = _stderr_line(capsys)
    assert err.startswith("alloyflow hull: error: unknown phase(s) LiXx in Li-In; known: ")
    assert "LiIn" in err and "Li3In" in err
    assert not (out / "Li-In").exists()


def test_candidate_phases_checks_names_against_the_systems_they_may_belong_to():
    """A study's --phases name phases of each of its systems; a name no system knows is an error."""
    from alloyflow.structures import StructureLibrary
    from alloyflow.workflows.flows.hull import candidate_phases

    lib = StructureLibrary()
    names = [p.name for p in candidate_phases("Li-In", "mock", lib, ["LiIn", "LiSn"])]  # LiSn: Li-Sn's
    assert "LiIn" in names and "LiSn" not in names
    with pytest.raises(ValueError, match=r"unknown phase\(s\) LiXx in Li-In; known: .*LiIn"):
        candidate_phases("Li-In", "mock", lib, ["LiIn", "LiXx"])
    with pytest.raises(ValueError, match=r"unknown phase\(s\) LiSn in Li-In"):
        candidate_phases("Li-In", "mock", lib, ["LiSn"], systems=["Li-In"])
    candidate_phases("Li-In", "mock", lib, ["LiSn"], systems=["Li-In", "Li-Sn"])


def test_structure_of_another_system_is_a_warning_naming_the_file(tmp_path, capsys):
    """Before: a Li-Sn CIF in --structures of a Li-In hull was read and silently left out."""
    folder = _cif_folder(tmp_path, "LiSn_mine", "Li1 Li 0 0 0 1\nSn1 Sn 0.5 0.5 0.5 1")
    (folder / "LiIn_mine.cif").write_text(_CIF.format(name="LiIn_mine", sites="Li1 Li 0 0 0 1\nIn1 In 0.5 0.5 0.5 1"))
    assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "Li", "In", "--structures", str(folder),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "LiSn_mine.cif" in err[0] and "Li-In" in err[0], err
    assert "LiIn_mine" not in err[0]


# --------------------------------------------------------------------------- 8. one-line errors


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    """Before: a FileExistsError / NotADirectoryError traceback from mkdir."""
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    for out in (afile, afile / "sub"):
        assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(out),
                     "--no-progress"]) == 1
        err = _stderr_line(capsys)
        assert err.startswith("alloyflow hull: error: ") and f"{afile} is a file, not a folder" in err
    assert afile.read_text() == "not a folder"


def test_read_only_out_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """Before: a PermissionError traceback. Root ignores folder modes: there mkdir is made to refuse as the
    kernel would for anyone else (the path-under-a-file test covers the real error path as root)."""
    import os
    import pathlib

    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() == 0:
        real_mkdir = pathlib.Path.mkdir

        def refuse(self, *args, **kwargs):
            if out in (self, *self.parents) and self != out:
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    try:
        assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(out),
                     "--no-progress"]) == 1
    finally:
        out.chmod(0o700)
    err = _stderr_line(capsys)
    assert err.startswith("alloyflow hull: error: ") and "permission denied" in err.lower() and str(out) in err


def _submit(tmp_path, launchpad):
    return main(["submit", "hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--launchpad", str(launchpad),
                 "--out", str(tmp_path / "out")])


def test_malformed_launchpad_yaml_is_one_line_without_its_text(tmp_path, capsys):
    """Before: a ruamel ScannerError traceback that printed the offending line (next to the password)."""
    pytest.importorskip("fireworks")
    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text("host: db.example.org\nport: 27017\nname: fw\nusername: me\n"
                  "password: hunter2-secret\n  oops: [unclosed\n")
    assert _submit(tmp_path, lp) == 1
    err = _stderr_line(capsys)
    assert str(lp) in err and "not valid YAML at line 6" in err
    assert "hunter2" not in err and "oops" not in err and "unclosed" not in err


def test_missing_or_unreachable_launchpad_is_one_line(tmp_path, capsys):
    """Before: a FileNotFoundError traceback; an unreachable server a ServerSelectionTimeoutError traceback."""
    import os

    pytest.importorskip("fireworks")
    assert _submit(tmp_path, tmp_path / "nowhere.yaml") == 1
    err = _stderr_line(capsys)
    assert "nowhere.yaml does not exist" in err
    if os.environ.get("MONGOMOCK_SERVERSTORE_FILE"):
        pytest.skip("a mongomock LaunchPad is always reachable")
    lp = tmp_path / "closed.yaml"
    lp.write_text("host: 127.0.0.1\nport: 9\nname: fw\nmongoclient_kwargs:\n  serverSelectionTimeoutMS: 300\n")
    assert _submit(tmp_path, lp) == 1
    err = _stderr_line(capsys)
    assert str(lp) in err and "unreachable" in err and "ServerSelectionTimeoutError" in err


def test_bad_qadapter_is_one_line_and_names_no_class_to_import(tmp_path):
    """Before: a traceback from FireWorks' loader, which also imports whatever class ``_fw_name`` names."""
    from pathlib import Path

    pytest.importorskip("fireworks")
    from alloyflow.engine.fireworks import load_qadapter

    example = Path(__file__).resolve().parent.parent / "examples" / "hpc" / "my_qadapter.yaml"
    assert load_qadapter(example).q_type == "SLURM"
    cases = {
        "missing": (None, "does not exist"),
        "broken": ("_fw_name: CommonAdapter\n  x: [unclosed\n", "not valid YAML at line"),
        "list": ("- a\n- b\n", "must be a mapping"),
        "other": ("_fw_name: '{{os.system}}'\n_fw_q_type: SLURM\n", "_fw_name must be CommonAdapter"),
        "queue": ("_fw_name: CommonAdapter\n_fw_q_type: CONDOR\n", "_fw_q_type must be one of"),
    }
    for name, (text, why) in cases.items():
        path = tmp_path / f"{name}.yaml"
        if text is not None:
            path.write_text(text)
        with pytest.raises(ValueError, match=why) as info:
            load_qadapter(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


# --------------------------------------------------------------------------- 9. one corrupt document


def _rows(out):
    import sqlite3

    import bson

    db = next((out / "store").rglob("outputs.collection"))
    conn = sqlite3.connect(db)
    return conn, [(k, v, bson.decode(v)) for k, v in conn.execute("SELECT k, v FROM documents")]


def test_undecodable_document_is_quarantined_and_only_its_job_recomputed(tmp_path, capsys):
    """Before: one row whose BSON did not decode made the whole store 'unreadable' (exit 1, nothing reused)."""
    out = tmp_path / "out"
    args = ["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    conn, rows = _rows(out)
    key, value, _ = next(r for r in rows if r[2]["name"] == "relax LiIn")
    with conn:
        conn.execute("UPDATE documents SET v = ? WHERE k = ?", (value[: len(value) // 2], key))
    conn.close()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 job(s) computed, 2 reused" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "1 unreadable document(s)" in err[0] and "quarantine" in err[0], err
    assert len(list((out / "store" / "quarantine").iterdir())) == 1
    assert main(args) == 0 and "0 job(s) computed, 3 reused" in capsys.readouterr().out


def test_document_that_does_not_deserialize_is_named_quarantined_and_recomputed(tmp_path, capsys):
    """Before: a stored output that failed validation stopped the command; nothing said which job it was."""
    import bson

    out = tmp_path / "out"
    args = ["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    conn, rows = _rows(out)
    key, _, doc = next(r for r in rows if r[2]["name"] == "relax LiIn")
    doc["output"]["energy_per_atom"] = "not a number"
    with conn:
        conn.execute("UPDATE documents SET v = ? WHERE k = ?", (bson.encode(doc), key))
    conn.close()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 job(s) computed, 2 reused" in captured.out
    assert "'relax LiIn'" in captured.err and "quarantine" in captured.err


def test_damaged_store_file_is_still_a_clear_error(tmp_path):
    """A truncated sqlite file is not salvaged row by row: it is left untouched and named."""
    from alloyflow.engine import ResultStore, StoreError

    with ResultStore(tmp_path) as store:
        assert store.count() == 0
    assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    collection = next((tmp_path / "store").rglob("outputs.collection"))
    damaged = collection.read_bytes()[:1500]
    collection.write_bytes(damaged)
    with pytest.raises(StoreError, match="unreadable"):
        ResultStore(tmp_path)
    assert collection.read_bytes() == damaged and not (tmp_path / "store" / "quarantine").exists()


def test_store_check_quarantines_every_unreadable_document(tmp_path, capsys):
    """``alloyflow store check``: both kinds of bad document found in one pass, the rest kept; a second check
    finds nothing. Before: no such command."""
    import bson

    out = tmp_path / "out"
    assert main(["hull", "Li-In", "--calculator", "mock", "--phases", "LiIn", "--out", str(out), "--no-progress"]) == 0
    conn, rows = _rows(out)
    by_name = {r[2]["name"]: r for r in rows}
    key, value, _ = by_name["relax In"]
    with conn:
        conn.execute("UPDATE documents SET v = ? WHERE k = ?", (value[:100], key))
        key, _, doc = by_name["relax LiIn"]
        doc["output"]["energy_per_atom"] = "not a number"
        conn.execute("UPDATE documents SET v = ? WHERE k = ?", (bson.encode(doc), key))
    conn.close()
    capsys.readouterr()
    assert main(["store", "check", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{len(rows) - 2} readable document(s)" in captured.out and "(2):" in captured.out
    assert "'relax LiIn'" in captured.out
    assert main(["store", "check", "--out", str(out)]) == 0
    assert "nothing quarantined" in capsys.readouterr().out
    assert main(["store", "check", "--out", str(tmp_path / "none")]) == 1
    assert "no job store" in _stderr_line(capsys) and not (tmp_path / "none").exists()


def test_element_check_loads_no_model(monkeypatch):
    """A rerun with every job stored checks elements from the table, never by loading SevenNet-0."""
    import alloyflow.calculators.registry as registry
    from alloyflow.calculators import check_elements

    def refuse(*a, **k):
        raise AssertionError("a model was loaded to check elements")

    monkeypatch.setattr(registry, "get_calculator", refuse)
    check_elements("sevennet", ["Li", "In", "Sn"], where="test")
    with pytest.raises(Exception, match="Og"):
        check_elements("sevennet", ["Li", "Og"], where="test")


def test_sevennet_element_table_is_the_models_type_map():
    from alloyflow.calculators.mlip import SEVENNET_0_ELEMENTS, model_elements

    assert model_elements("sevennet") == SEVENNET_0_ELEMENTS and len(SEVENNET_0_ELEMENTS) == 89


def test_a_temporary_file_left_by_a_killed_write_is_removed_by_the_next_write(tmp_path):
    from alloyflow.io.files import write_text_atomic

    stale = tmp_path / ".hull.json.abc123.json"
    stale.write_text("{half")
    write_text_atomic(tmp_path / "hull.json", "{}")
    assert not stale.exists() and (tmp_path / "hull.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hull.json"]


def test_openmp_threads_wait_passively_unless_the_user_chose():
    """torch's spinning OpenMP threads made two threads 3-8x slower beside other jobs (benchmarks/thread_policy.py)."""
    import os
    import subprocess
    import sys

    code = "import alloyflow, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() \
        == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() \
        == "ACTIVE"
