"""Add a study's predicted near-hull cells to the frozen label set (issue 16: labels where the potential errs).

    python benchmarks/label_extend.py STUDY_DIR --system Li-In [--window 0.003] [--max-atoms 8]
        [--validation NAME ...] [--import-store benchmarks/out/hull_check] [--out DIR] [--dry-run]

The campaign's structure set (``label_campaign.py``) was built from the
library's phases; the tie-line search's orderings were not in it, and the
potential fine-tuned on it puts some of them far too deep (GPAW on its own
geometries, ``hull_dft_check.py``: C11b LiIn2 59 meV/atom, L1₀ LiIn 25,
Li5Sn 29). This takes every *predicted* phase of a stored study's hull with
at most ``--max-atoms`` atoms within ``--window`` eV/atom of that hull, at
the study's relaxed geometry (the geometry the potential chose: the labels
land where its error is), and adds per cell three structures to the set:
the relaxed cell and its isotropic -2 % and +2 % strains, in the group
``search:<name>`` (training, unless named with ``--validation``).

Nothing already in the set changes: its items, splits and label keys stay;
a new structure matching (the campaign's ``deduplicate``) one already there
is dropped and listed. The extension is recorded in the set's notes
(``extensions``: study, its calculator, selection, names) and the set is
frozen again (``DIR/structure_set.json.gz`` and, for the campaign's own
folder, the committed ``benchmarks/label_structure_set.json.gz``); the next
``label_campaign.py run`` labels the new structures first (relaxed cells,
then strains).

``--import-store``: single points already computed at the campaign's
settings in another store (``hull_dft_check.py``'s: same ``LabelMaker`` and
settings, so the same keys) are copied into the campaign's store instead
of computed again. Run it with the campaign stopped (it takes the store's
lock).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import label_campaign as lc  # noqa: E402
import numpy as np  # noqa: E402

SEARCH_STRAINS = (-0.02, 0.02)


def selected_phases(study: Path, system: str, window: float, max_atoms: int) -> tuple[dict, list[dict]]:
    """The study's hull (``<system>/hull.json``) and its predicted phases within ``window`` and ``max_atoms``."""
    path = study / system / "hull.json"
    if not path.is_file():
        raise SystemExit(f"no hull of {system} in {study} ({path} is missing)")
    hull = json.loads(path.read_text())
    phases = [p for p in hull["phases"] if p["status"] == "predicted" and p["natoms"] <= max_atoms
              and p["e_above_hull"] <= window]
    return hull, sorted(phases, key=lambda p: (p["x_li"], p["name"]))


def search_items(study: Path, system: str, window: float, max_atoms: int, validation: set[str] = frozenset(),
                 strains=SEARCH_STRAINS, tag: str = "") -> tuple[list, dict]:
    """Items (relaxed cell and isotropic strains) of the study's predicted near-hull phases, and a record of them.

    Labels are ``<system>/search<tag>/<name>/...``: a later round on another potential's study (the same
    names at other geometries) needs its own ``tag``, else its cells count as already in the set.
    """
    from pymatgen.core import Structure

    from hull_dft_check import relaxed_structures

    hull, phases = selected_phases(study, system, window, max_atoms)
    unknown = validation - {p["name"] for p in phases}
    if unknown:
        raise SystemExit(f"--validation names no selected phase: {', '.join(sorted(unknown))}")
    docs = relaxed_structures(study, {p["name"] for p in phases})
    items, missing = [], []
    for p in phases:
        if p["name"] not in docs:
            missing.append(p["name"])
            continue
        relaxed = Structure.from_dict(docs[p["name"]]["structure"])
        group, split = f"search{tag}:{p['name']}", ("validation" if p["name"] in validation else "train")
        meta = {"source": "tie-line search", "study_calculator": hull["calculator"]["label"],
                "ml_formation_eV_per_atom": p["formation_energy_per_atom"], "ml_e_above_hull_eV": p["e_above_hull"]}
        base = f"{system}/search{tag}/{p['name']}"
        items.append(lc.Item(f"{base}/relaxed", group, "relaxed", system, relaxed, dict(meta), split))
        for eps in strains:
            items.append(lc.Item(f"{base}/strain{eps:+.0%}", group, "strain", system,
                                 lc.strained(relaxed, eps * np.eye(3)), {**meta, "strain": eps}, split))
    record = {"study": str(study), "system": system, "tag": tag, "calculator": hull["calculator"]["label"],
              "selection": {"status": "predicted", "window_eV_per_atom": window, "max_atoms": max_atoms},
              "phases": [p["name"] for p in phases if p["name"] not in missing],
              "no_stored_relaxation": missing, "validation": sorted(validation),
              "strains": list(strains), "added": time.strftime("%Y-%m-%d %H:%M:%S")}
    return items, record


def extend(items: list, notes: dict, new: list, record: dict) -> tuple[list, dict, list]:
    """``items`` plus those of ``new`` that match none of them (or each other); returns (items, notes, added)."""
    labels = {it.label for it in items}
    fresh = [it for it in new if it.label not in labels]
    kept, dropped = lc.deduplicate(fresh, against=items)
    record = {**record, "already_in_set": sorted(it.label for it in new if it.label in labels),
              "added_labels": sorted(it.label for it in kept), "dropped_duplicates": dropped}
    notes = {**notes, "extensions": [*notes.get("extensions", []), record]}
    return lc.ordered([*items, *kept]), notes, kept


def import_labels(store, source, items: list, dft: str, dft_kwargs: dict, out: Path, log_fn=lc.log) -> int:
    """Copy the single points of ``items`` that ``source`` holds (same key) and ``store`` lacks; returns how many."""
    from alloyflow.engine import deterministic_uuid

    maker = lc.label_maker(dft, dft_kwargs)
    rows = []
    for it in items:
        key = maker.key(it.structure)
        uuid = deterministic_uuid(key)
        if store.has(uuid) or not source.has(uuid):
            continue
        doc = {**source.output(uuid), "label": it.label, "copied_from": str(source.out_dir)}
        rows.append((it.label, key, doc, doc.get("cpu_seconds"), doc.get("elapsed_seconds", -1.0),
                     f"copied from {source.out_dir}"))
    return lc.store_done_elsewhere(store, out, rows, log_fn, what=f"single points copied from {source.out_dir}")


def saved_config(path: Path):
    """The ``CampaignConfig`` a frozen set was built with (kept when the set is frozen again)."""
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return lc.CampaignConfig(**json.load(fh)["config"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("study", type=Path)
    ap.add_argument("--system", required=True, choices=lc.SYSTEMS)
    ap.add_argument("--window", type=float, default=0.003, help="eV/atom above the study's hull (default 0.003)")
    ap.add_argument("--max-atoms", type=int, default=8)
    ap.add_argument("--validation", nargs="*", default=[], help="phase names whose groups are held out")
    ap.add_argument("--import-store", type=Path, default=None,
                    help="a store with single points at the campaign's settings to copy (hull_dft_check.py's)")
    ap.add_argument("--out", type=Path, default=lc.DEFAULT_OUT)
    ap.add_argument("--tag", default="", help="label suffix of a later round ('2': <system>/search2/<name>/...)")
    ap.add_argument("--dry-run", action="store_true", help="list what would be added; change nothing")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.window < 0 or args.max_atoms < 1:
        raise SystemExit("--window must be >= 0 and --max-atoms >= 1")
    if args.tag and not args.tag.isalnum():
        raise SystemExit(f"--tag must be letters and digits, got {args.tag!r}")
    if args.import_store is not None and not (args.import_store / "store").is_dir():
        raise SystemExit(f"--import-store {args.import_store}: no store there")
    from alloyflow.engine import ResultStore

    own = args.out.resolve() == lc.DEFAULT_OUT.resolve()
    frozen = args.out / lc.SET_FILE
    source = frozen if frozen.is_file() else lc.REPO_SET if own else None
    if source is None or not source.is_file():
        raise SystemExit(f"no frozen structure set in {args.out}: run 'label_campaign.py plan' first")
    items, notes = lc.load_structure_set(source)
    new, record = search_items(args.study, args.system, args.window, args.max_atoms, set(args.validation),
                               tag=args.tag)
    items, notes, added = extend(items, notes, new, record)
    for it in added:
        lc.log(f"  + {it.label} ({it.split}, {len(it.structure)} atoms)")
    ext = notes["extensions"][-1]
    lc.log(f"{len(added)} structures added from {len(ext['phases'])} phases; {len(ext['already_in_set'])} already "
           f"in the set; {len(ext['dropped_duplicates'])} duplicates dropped; the set has {len(items)}")
    if args.dry_run or not added:
        return 0
    dft_kwargs = dict(lc.DFT_SETTINGS)
    config = saved_config(source)
    with ResultStore(args.out) as store:  # the campaign's lock: not while it runs
        lc.save_structure_set(frozen, items, notes, config)
        if own:
            lc.REPO_SET.write_bytes(frozen.read_bytes())
        if args.import_store is not None:
            src = ResultStore(args.import_store)  # only read: no lock
            try:
                import_labels(store, src, added, "gpaw", dft_kwargs, args.out)
            finally:
                src.close_readers()
    lc.log(f"frozen: {frozen}" + (f" and {lc.REPO_SET}" if own else "") + "; 'label_campaign.py run' labels them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
