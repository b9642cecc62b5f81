"""Labelled frames and what is measured on them: per-element shifts, predictions, errors, formation energies, bands.

Pure functions over ASE frames (``info["label"]``, ``info["kind"]``,
``info["split"]``) and a calculator's predictions, shared by the shipped
potential's training (``alloyflow.ml.shipped``), the fine-tuning of the
active-learning loop (``alloyflow.ml.finetune``) and the benchmarks.
"""

from __future__ import annotations

import re

import numpy as np


def shift_of(atoms, shifts: dict) -> float:
    """The per-element energy shift of ``atoms`` (eV)."""
    return sum(shifts.get(s, 0.0) for s in atoms.get_chemical_symbols())


def shift_frames(frames, shifts: dict) -> list:
    """Copies of ``frames`` with the energies shifted by ``shifts`` (eV per atom of each element)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for ref in frames:
        a = ref.copy()
        a.calc = SinglePointCalculator(a, energy=ref.get_potential_energy() - shift_of(ref, shifts),
                                       forces=ref.get_forces(), stress=ref.get_stress())
        a.info = dict(ref.info)
        out.append(a)
    return out


def fit_shifts(frames, energies) -> dict:
    """Per-element energies (eV/atom) that take the labels onto the zero of the model that predicted ``energies``."""
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    counts = np.array([[a.get_chemical_symbols().count(el) for el in elements] for a in frames], dtype=float)
    residual = np.array([a.get_potential_energy() - e for a, e in zip(frames, energies)])
    x, *_ = np.linalg.lstsq(counts, residual, rcond=None)
    return {el: float(v) for el, v in zip(elements, x)}


def predict(calc, atoms) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces and stress of ``atoms`` from ``calc`` (the frame's own labels untouched)."""
    a = atoms.copy()
    a.calc = calc
    return float(a.get_potential_energy()), a.get_forces(), a.get_stress()


def _deviations(frames, predictions, shifts: dict):
    """Per frame: energy per atom (eV), force components (eV/Å) and stress (eV/Å³), prediction minus shifted label."""
    de = [(p[0] - (a.get_potential_energy() - shift_of(a, shifts))) / len(a) for a, p in zip(frames, predictions)]
    df = np.concatenate([(p[1] - a.get_forces()).ravel() for a, p in zip(frames, predictions)])
    ds = np.concatenate([p[2] - a.get_stress() for a, p in zip(frames, predictions)])
    return np.asarray(de), df, ds


def errors(frames, predictions, shifts: dict) -> dict:
    """Mean absolute errors of ``predictions`` against the shifted labels: energy meV/atom, force meV/Å, stress GPa."""
    if not frames:
        return {}
    de, df, ds = _deviations(frames, predictions, shifts)
    return {"n": len(frames), "energy_mae_meV_atom": 1e3 * float(np.mean(np.abs(de))),
            "force_mae_meV_A": 1e3 * float(np.mean(np.abs(df))), "stress_mae_GPa": 160.21766 * float(np.mean(np.abs(ds)))}


def stop_score(frames, predictions, shifts: dict) -> float:
    """Mean squared energy-per-atom plus force error (eV², eV²/Å²): the two terms the loss weighs most."""
    de, df, _ = _deviations(frames, predictions, shifts)
    return float(np.mean(np.square(de)) + np.mean(np.square(df)))


def formation_energies(frames, predictions, references: dict[str, str]) -> dict[str, dict]:
    """Formation energy per atom (meV) of every relaxed phase, from the labels and from ``predictions``.

    Same geometries for both; ``references``: element -> label of its relaxed elemental frame.
    """
    by_label = {a.info.get("label"): (a, p[0]) for a, p in zip(frames, predictions)}
    mu_dft = {el: by_label[label][0].get_potential_energy() / len(by_label[label][0]) for el, label in references.items()}
    mu_ml = {el: by_label[label][1] / len(by_label[label][0]) for el, label in references.items()}
    out = {}
    for a, p in zip(frames, predictions):
        syms = a.get_chemical_symbols()
        if a.info.get("kind") != "relaxed" or len(set(syms)) < 2:
            continue
        out[a.info["label"]] = {"dft": 1e3 * (a.get_potential_energy() - sum(mu_dft[s] for s in syms)) / len(a),
                                "ml": 1e3 * (p[0] - sum(mu_ml[s] for s in syms)) / len(a), "split": a.info.get("split")}
    return out


BAND_IMAGE = re.compile(r"(?P<band>.+/hop\d+)/image(?P<k>\d+)")
"""Labels of band images in the campaign: ``<system>/<phase>/hop<id>/image<k>``, image 0 the initial endpoint."""


def band_labels(manifest: dict) -> tuple[dict[str, str], list[str]]:
    """``(aliases, planned)`` of ``band_barriers`` from the exported labels' ``manifest.json``."""
    aliases = {d["label"]: d["same_as"] for d in manifest.get("notes", {}).get("dropped_duplicates", [])}
    return aliases, list(manifest.get("split", {}))


def band_barriers(frames, predictions, aliases: dict[str, str] | None = None, planned=()) -> dict[str, dict]:
    """Forward barrier (meV) of every band whose initial endpoint and one of its own inner images are labelled.

    The labels give DFT//ML (the DFT energies on the ML band's images), ``predictions`` the model's barrier
    on the same images: ``max_k E(k) - E(0)`` over the labelled images ``k``. ``aliases`` maps a label
    the campaign dropped as a duplicate to the label it repeats (``dropped_duplicates`` of the labels'
    manifest): a band's endpoint is often another band's. ``planned``: every label of the campaign's set,
    labelled or not, so that a band's length is known before its last image is labelled. Each entry lists
    the images used and how many the band has, so a barrier over a partly labelled band says so.
    """
    aliases = aliases or {}
    by_label = {a.info.get("label"): (a, p[0]) for a, p in zip(frames, predictions)}

    def resolve(label):
        seen = set()
        while label not in by_label and label in aliases and label not in seen:
            seen.add(label)
            label = aliases[label]
        return by_label.get(label)

    bands: dict[str, dict[int, str]] = {}
    length: dict[str, int] = {}
    for label in [*by_label, *aliases, *planned]:
        m = BAND_IMAGE.fullmatch(str(label))
        if m:
            length[m["band"]] = max(length.get(m["band"], 0), int(m["k"]) + 1)
            if label in by_label or label in aliases:
                bands.setdefault(m["band"], {})[int(m["k"])] = label
    out = {}
    for band, images in sorted(bands.items()):
        got = {k: resolve(label) for k, label in sorted(images.items())}
        got = {k: v for k, v in got.items() if v is not None}
        inner = [k for k, label in images.items()
                 if k > 0 and label in by_label and by_label[label][0].info.get("kind") != "neb_endpoint"]
        if 0 not in got or not inner:  # endpoints alone (e.g. both another band's) say nothing of the saddle
            continue
        e_dft = {k: a.get_potential_energy() for k, (a, _) in got.items()}
        e_ml = {k: e for k, (_, e) in got.items()}
        own = [by_label[label][0] for label in images.values() if label in by_label]
        out[band] = {"dft": 1e3 * (max(e_dft.values()) - e_dft[0]), "ml": 1e3 * (max(e_ml.values()) - e_ml[0]),
                     "images": sorted(got), "band_images": length[band],
                     "split": own[0].info.get("split") if own else None}
    return out
