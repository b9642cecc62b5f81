"""``alloyflow refine`` on the mock potential: stored bands refined, re-converged, written and reported."""

import json

from alloyflow.cli import main
from alloyflow.workflows.flows.fidelity import FidelityResult, format_fidelity
from alloyflow.io.report import load_fidelity_results


def test_refine_command_on_stored_bands(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["barriers", "Li", "--system", "Li-In", "--calculator", "mock", "--out", out,
                 "--min-image-distance", "6", "--images", "3", "--max-hops", "1", "--no-progress"]) == 0
    n_before = len(list((tmp_path / "store").iterdir()))
    capsys.readouterr()
    assert main(["refine", "Li", "--calculator", "mock", "--dft", "mock", "--out", out, "--reconverge",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "DFT//ML" in text and "fidelity.json" in text
    data = json.loads((tmp_path / "barriers" / "Li" / "fidelity.json").read_text())
    fid = FidelityResult.model_validate(data)
    hop = fid.hops[0]
    # the same potential as "DFT": DFT//ML and the re-converged band reproduce the ML barrier
    assert abs(hop.dft_ml - hop.ml) < 1e-6 and abs(hop.dft - hop.ml) < 0.01 and hop.dft_converged
    assert fid.ml_calculator["name"] == "mock" and fid.dft_calculator["name"] == "mock"
    # bcc Li's hop: the barriers flow relaxes one endpoint and maps it onto the other by symmetry, so the final
    # endpoint takes the initial one's single point (refine_band's symmetric_endpoints)
    assert hop.dft_ml_single_points == 2 and fid.dft_single_points == 2
    assert load_fidelity_results(tmp_path)[0].phase == "Li"
    table = format_fidelity([fid])
    assert "| Li | 0 |" in table and "DFT//ML" in table
    assert len(list((tmp_path / "store").iterdir())) >= n_before

    # a second run computes nothing new
    capsys.readouterr()
    assert main(["refine", "Li", "--calculator", "mock", "--dft", "mock", "--out", out, "--reconverge"]) == 0
    again = FidelityResult.model_validate_json((tmp_path / "barriers" / "Li" / "fidelity.json").read_text())
    assert again.dft_single_points == 0


def test_refine_errors_are_clear(tmp_path, capsys):
    assert main(["refine", "Nope", "--calculator", "mock", "--dft", "mock", "--out", str(tmp_path)]) == 1
    assert "Nope" in capsys.readouterr().err
