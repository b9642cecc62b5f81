"""Fine-tuning SevenNet-0: keyed labels, checkpoint in the study, loads back, changes predictions.

The labels here come from the mock potential (far from SevenNet-0, so one
fine-tuning step visibly moves predictions) to keep the test under ~90 s;
the workflow's default labeller is GPAW.
"""

import os

import numpy as np
import pytest

pytest.importorskip("sevenn")

from pymatgen.core import Lattice, Structure  # noqa: E402

from alloyflow.calculators import CalculatorError, calculator_info, get_calculator  # noqa: E402
from alloyflow.engine import ResultStore  # noqa: E402
from alloyflow.ml.finetune import (  # noqa: E402
    finetune_sevennet,
    label_structures,
    load_finetuned,
    register_finetuned,
    training_structures,
)
from alloyflow.workflows.jobs.neb import NebDocument  # noqa: E402


def _tiny_band() -> NebDocument:
    """A stand-in 'band' of 4-atom bcc-Li cells (only images and label are used for training sets)."""
    s = Structure.from_spacegroup("Im-3m", Lattice.cubic(3.44), ["Li"], [[0, 0, 0]])
    s.make_supercell([2, 1, 1])
    images = []
    for k in range(3):
        t = s.copy()
        t.translate_sites([0], [0.05 * k, 0.03 * k, 0], frac_coords=False)
        images.append(t)
    return NebDocument(label="toy", calculator=calculator_info("mock"), input_hash="x", n_images=1,
                       energies=[0.0, 0.1, 0.0], images=images, forward_barrier=0.1, reverse_barrier=0.1,
                       endpoint_asymmetry=0.0, climbing_image=1, converged=True, n_steps=1, force_calls=1,
                       model_calls=1, max_force=0.0, fmax=0.05, hop_distance=0.06, elapsed_seconds=0.0,
                       evaluation_seconds=0.0)


@pytest.mark.slow
def test_finetune_registers_and_changes_predictions(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("ALLOYFLOW_THREADS", "1")
    torch.set_num_threads(2)
    structures = training_structures([_tiny_band()], n_rattle=2, seed=1)
    assert len(structures) == 3 + 2 * 2
    with ResultStore(tmp_path) as store:
        frames, failures = label_structures(structures, store, calculator="mock")
        again, _ = label_structures(structures, store, calculator="mock")
        assert store.count() == len(structures)  # keyed: the second labelling computed nothing
    assert not failures and len(frames) == len(again) == 7
    assert frames[0].get_stress().shape == (6,) and frames[0].get_forces().shape == (4, 3)

    result = finetune_sevennet(frames, tmp_path, "li-ft", label_calculator=calculator_info("mock"), epochs=1, lr=1e-3)
    folder = tmp_path / "potentials" / "li-ft"
    assert (folder / "checkpoint.pth").is_file() and (folder / "train.extxyz").is_file()
    assert (folder / "val.extxyz").is_file() and (folder / "finetune.json").is_file()
    assert result.n_train == 5 and result.n_val == 2
    assert set(result.reference_shifts) == {"Li"}  # the mock's energy zero is far from SevenNet-0's
    base, ft = result.errors["base"], result.errors["finetuned"]
    for split in ("train", "val"):
        for err in (base[split], ft[split]):
            assert err["energy_mae_meV_atom"] >= 0 and err["force_mae_meV_A"] >= 0
    assert ft["train"]["energy_mae_meV_atom"] < base["train"]["energy_mae_meV_atom"]  # it learnt something
    assert result.input_hash and isinstance(result.validation_rose, bool) and "val force MAE" in result.summary()
    again = finetune_sevennet(frames, tmp_path, "li-ft", label_calculator=calculator_info("mock"), epochs=1, lr=1e-3)
    assert again.sha256 == result.sha256 and again.train_seconds == result.train_seconds  # reused, not retrained

    loaded = load_finetuned(tmp_path, "li-ft")  # as a new process would: from the study folder
    info = calculator_info("li-ft")
    assert info["kind"] == "mlip" and result.sha256[:12] in info["model"] and loaded.sha256 == result.sha256
    probe = frames[0].copy()
    probe.calc = get_calculator("li-ft")
    e_ft = probe.get_potential_energy()
    probe.calc = get_calculator("sevennet")
    e_base = probe.get_potential_energy()
    assert abs(e_ft - e_base) > 1e-4  # the fine-tuned model predicts differently

    # fine-tuning recorded the checkpoint and its digest in the per-user trusted record (not only in the folder)
    from alloyflow.calculators import registry
    from alloyflow.calculators.user import trusted_record, trusted_registry_path

    assert trusted_registry_path().is_relative_to(os.environ["XDG_CONFIG_HOME"])
    record = trusted_record(folder / "checkpoint.pth")
    assert record is not None and record["name"] == "li-ft" and record["sha256"] == result.sha256

    # a new command line sees this installation's potentials as --calculator choices
    from alloyflow.cli import _register_trusted_potentials, build_parser

    registry._REGISTRY.pop("li-ft")  # as in a new process
    _register_trusted_potentials(["hull", "Li-In", "--out", str(tmp_path)])
    args = build_parser().parse_args(["hull", "Li-In", "--calculator", "li-ft", "--out", str(tmp_path)])
    assert args.calculator == "li-ft"
    assert result.sha256[:12] in calculator_info("li-ft")["model"]

    # A broken file is a clear error and leaves the registry (and the default) usable.
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CalculatorError, match="does not load"):
        register_finetuned("li-bad", bad)
    with pytest.raises(CalculatorError, match="unknown calculator"):
        get_calculator("li-bad")
    with pytest.raises(CalculatorError, match="built-in"):
        register_finetuned("sevennet", folder / "checkpoint.pth")
    assert np.isfinite(probe.get_potential_energy())  # the default still works
