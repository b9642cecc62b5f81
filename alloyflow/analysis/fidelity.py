"""Barrier-fidelity tables (ML vs DFT//ML, DFT, fine-tuned) from ``FidelityResult`` documents."""

from __future__ import annotations


def _m(x) -> str:
    return "–" if x is None else f"{1000 * x:.0f}"


def format_fidelity(results: list) -> str:
    """Markdown: per hop, ML / DFT//ML / DFT / fine-tuned barriers (meV) with their costs, then training errors."""
    if not results:
        return ""
    lines = ["| phase | hop | length (Å) | ML | DFT//ML | DFT (band) | fine-tuned ML | DFT//fine-tuned | "
             "DFT single points | DFT wall (s) |", "|---" * 10 + "|"]
    for f in results:
        for h in f.hops:
            dft_calls = h.dft_ml_single_points + (h.dft_force_calls or 0)
            dft_ml = _m(h.dft_ml) + (" (lower bound)" if h.dft_saddle_shifted else "")
            lines.append(f"| {f.phase} | {h.hop} | {h.length:.2f} | {_m(h.ml)} | {dft_ml} | {_m(h.dft)} | "
                         f"{_m(h.finetuned_ml)} | {_m(h.finetuned_dft_ml)} | {dft_calls} | "
                         f"{h.dft_ml_seconds + (h.dft_seconds or 0):.0f} |")
    notes = []
    for f in results:
        s = f.dft_calculator.get("settings", {})
        notes.append(f"- {f.phase}: ML = {f.ml_calculator.get('model')} (ML potential); DFT = {f.dft_calculator.get('model')}"
                     + (f" (PW {s.get('ecut'):g} eV, k-density {s.get('kpt_density'):g}/Å)" if "ecut" in s else "")
                     + f"; {f.dft_single_points} DFT single points computed, {f.dft_seconds:.0f} s DFT, "
                     f"{f.train_seconds:.0f} s training")
        if f.convergence:
            notes.append(f"  - settings chosen by convergence: {f.convergence['settings']}")
        ft = f.finetuned
        if ft:
            notes.append(f"  - fine-tuning: {ft['stop_reason']} (potential {ft['model']})")
            if ft.get("errors"):
                e = ft["errors"]
                notes.append("  - errors vs DFT labels, 7net-0 → fine-tuned: train "
                             f"{e['base']['train']['energy_mae_meV_atom']:.1f} → {e['finetuned']['train']['energy_mae_meV_atom']:.1f} meV/atom, "
                             f"{e['base']['train']['force_mae_meV_A']:.0f} → {e['finetuned']['train']['force_mae_meV_A']:.0f} meV/Å; "
                             f"validation {e['base']['val']['energy_mae_meV_atom']:.1f} → {e['finetuned']['val']['energy_mae_meV_atom']:.1f} meV/atom, "
                             f"{e['base']['val']['force_mae_meV_A']:.0f} → {e['finetuned']['val']['force_mae_meV_A']:.0f} meV/Å "
                             f"({ft['n_train']} train / {ft['n_val']} validation structures)")
    return "\n".join(["Barriers in meV. DFT//ML: DFT energies on the ML geometries, never a plain DFT barrier; "
                      "DFT (band): the band re-converged with DFT forces.", "", *lines, "", *notes])
