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

    from alloyflow.structures.migration import (
        IMAGE_MARGIN,
        check_image_distance,
        distinct_hops,
        vacancy_hop_endpoints,
        vacancy_supercell_matrix,
    )

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
