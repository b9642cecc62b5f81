"""Active-learning bookkeeping on the mock potential: stop rule, label reuse, a rejected fine-tuning.

Fine-tuning itself is replaced here by registering the "DFT" (a mock
potential with other parameters) under the fine-tuned name, so the loop's
logic is tested without training; tests/test_finetune.py trains for real.
"""

import pytest

from alloyflow.calculators import CalculatorSpec, elements_up_to, calculator_info, register_calculator
from alloyflow.ml import active
from alloyflow.ml.active import active_learning, format_active_learning
from alloyflow.engine import ResultStore
from alloyflow.ml.finetune import FineTuneResult
from alloyflow.workflows.jobs.neb import NebMaker
from test_neb import bcc_vacancy_hop

DFT = {"alpha": 1.6}  # the loop's "DFT": mock with other parameters


def _bands(calc):
    return [NebMaker(calculator=calc, n_images=3).run(*bcc_vacancy_hop(), label="bcc Li hop")]


def _fake_finetune(val_before, val_after, calls):
    def finetune(frames, out_dir, name, label_calculator, **kw):
        calls.append((name, len(frames)))
        return FineTuneResult(
            name=name, registry_name=name, checkpoint=str(out_dir / "none.pth"), sha256="0" * 64, base_model="7net-0",
            label_calculator=label_calculator, n_train=len(frames) - 1, n_val=1, epochs=1, lr=1e-4,
            errors={"base": {"train": {"energy_mae_meV_atom": 1.0, "force_mae_meV_A": 20.0},
                             "val": {"energy_mae_meV_atom": 1.0, "force_mae_meV_A": val_before}},
                    "finetuned": {"train": {"energy_mae_meV_atom": 0.5, "force_mae_meV_A": 10.0},
                                  "val": {"energy_mae_meV_atom": 0.5, "force_mae_meV_A": val_after}}},
            train_seconds=1.0)
    return finetune


def _register_as_dft(name, checkpoint, sha256=None):
    from alloyflow.calculators.mock import _mock_factory

    register_calculator(CalculatorSpec(name=name, model=f"mock fine-tuned {name}", kind="test", package="alloyflow",
                                       description="test", factory=lambda **kw: _mock_factory(**DFT),
                                       supported_elements=lambda: elements_up_to(94)))


def test_loop_stops_when_ml_matches_dft_and_reuses_labels(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(active, "finetune_sevennet", _fake_finetune(20.0, 12.0, calls))
    monkeypatch.setattr(active, "register_finetuned", _register_as_dft)
    with ResultStore(tmp_path) as store:
        r = active_learning(_bands, store, tmp_path, "al", base_calculator="mock", dft="mock", dft_kwargs=DFT,
                            tolerance=0.005, max_iterations=2, n_rattle=1)
    first, second = r.iterations
    assert first.max_abs_error > 0.005 and first.finetune is not None and calls == [("al-1", 5 + 2)]
    # 3 refined single points (endpoints + saddle), then 5 images + 2 rattled endpoints labelled: 3 reused
    assert first.barriers[0].n_single_points == 3
    assert first.n_labels == 7 and first.dft_single_points == 3 + 4
    assert second.calculator["name"] == "al-1" and second.max_abs_error < 1e-6 and second.finetune is None
    assert r.converged and r.final_calculator == "al-1" and "within 5 meV" in r.stop_reason
    assert r.dft_calculator["name"] == "mock" and r.dft_calculator["settings"] == DFT
    assert "iteration 1 [mock fine-tuned al-1]" in format_active_learning(r)


def test_rising_validation_error_is_not_adopted(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(active, "finetune_sevennet", _fake_finetune(10.0, 30.0, calls))
    monkeypatch.setattr(active, "register_finetuned", lambda *a, **k: pytest.fail("must not register"))
    with ResultStore(tmp_path) as store:
        r = active_learning(_bands, store, tmp_path, "al", base_calculator="mock", dft="mock", dft_kwargs=DFT,
                            tolerance=0.005, max_iterations=2, n_rattle=0)
    assert len(r.iterations) == 1 and not r.converged and r.final_calculator == "mock"
    assert "raised the validation force error" in r.stop_reason and "10.0 -> 30.0" in r.stop_reason
    assert calculator_info(r.final_calculator)["name"] == "mock"


def test_failed_dft_stops_the_loop(tmp_path, monkeypatch):
    from alloyflow.workflows.jobs.labels import LabelMaker

    real = LabelMaker.run

    def scf_fails(self, structure, label=""):
        if label.endswith("image 0"):
            raise RuntimeError("SCF did not converge (simulated)")
        return real(self, structure, label)

    monkeypatch.setattr(LabelMaker, "run", scf_fails)
    with ResultStore(tmp_path) as store:
        r = active_learning(_bands, store, tmp_path, "al", base_calculator="mock", dft="mock", dft_kwargs=DFT)
    assert not r.converged and "SCF did not converge" in r.stop_reason and r.final_calculator == "mock"
    assert r.iterations[0].barriers[0].dft_forward_barrier is None
