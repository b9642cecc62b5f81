"""GPAW PBE label campaign for a fine-tuned Li-In-Sn SevenNet-0 (issue 16): structure set, labels, export.

    python benchmarks/label_campaign.py plan    [--out DIR]   # build the structure set and split, print counts
    python benchmarks/label_campaign.py run     [--out DIR] [--max-labels N] [--hours H] [--retry-failed] [--workers N]
    python benchmarks/label_campaign.py status  [--out DIR]   # progress.json / progress.md, no computing
    python benchmarks/label_campaign.py export  [--out DIR] [--dest alloyflow/data/labels]
    python benchmarks/label_campaign.py converge [--out DIR]  # the GPAW settings check on LiSn

``DIR`` defaults to ``benchmarks/out/labels`` (git-ignored). Long runs: one
core per single point (``--workers 2`` on this 2-core machine), ``nice -n 19``,
``nohup`` (see ``LAUNCH`` below); every step is a keyed
job in ``DIR/store``, so the same command after a kill resumes and a finished
campaign reruns in seconds. The first ``plan`` or ``run`` freezes the
structure set in ``DIR/structure_set.json.gz`` and in the repository
(``benchmarks/label_structure_set.json.gz``); later runs label exactly
those structures (``--rebuild`` to build anew), so a change of the ML code
between sessions cannot change the label keys.

The repository is the campaign's memory: ``DIR`` is git-ignored and a fresh
checkout has none. There ``run`` loads the committed set and stores the
committed labels (``alloyflow/data/labels/*.extxyz``, matched by label and
geometry) as done, so only the missing ones are computed; ``export`` keeps
exported labels that the store lacks; a rebuilt set takes the labelled
geometry of every exported label (``adopt_exported``). Export and commit the
labels at the end of every session.

GPAW settings (``DFT_SETTINGS``): the registry defaults, PW 600 eV, k-point
density 6/Å⁻¹ (Gamma-centred), Fermi-Dirac 0.1 eV, PBE, GPAW 26.7.0 with
gpaw-data 1.2.1. ``converge`` checked them on SevenNet-0 geometries of LiSn,
Li, beta-Sn, In and a rattled LiSn (``DIR/convergence.json``): the LiSn
formation energy is -351.6 / -350.5 / -350.7 / -350.7 meV/atom at 300 / 400 /
500 / 600 eV (k 5) and -357.1 / -346.5 / -351.6 / -347.8 / -347.5 at k 3 / 4 /
5 / 6 / 7 (300 eV); forces move by 0.7 meV/Å from 400 eV on (k-points: 15-18
meV/Å between 4, 5, 6 and 7 on a 6-atom cell); but the stress of In, beta-Sn
and LiSn moves by 2.5-6 GPa between 300-400 eV and 600 eV, and still by
0.4-0.7 GPa between 500 and 600 eV (Pulay stress). So energies alone would
allow 300 eV, but stress (a training target) needs 600 eV; and k 5 is 4
meV/atom off k 7 where k 6 is within 0.3.

What is labelled (``build_structure_set``), each a GPAW single point (energy,
forces, stress) through ``LabelMaker``:

* every library phase of Li-In and Li-Sn with at most ``max_atoms`` atoms in
  its primitive cell (the elements Li, In, beta- and alpha-Sn included),
  relaxed on SevenNet-0 by the hull's own keyed relax job; Li17Sn4 (105) and
  Li22Sn5 (108) are left out at the default 30 and listed as such;
* per phase: isotropic strains of -2 % and +2 %, one random symmetric strain
  (each Voigt component within +-2 %), a 0.05 A rattle and a 0.10 A rattle on
  a randomly strained cell (cells under 8 atoms are doubled along their
  shortest vector until they have 8, so that a rattle is not a translation);
* a relaxed and an unrelaxed Li-vacancy cell of every Li compound that has no
  NEB band below (supercell with vacancy images >= 6 A apart if that fits in
  ``max_atoms`` + 1 sites, else the largest image distance that does);
* SevenNet-0 CI-NEB bands (3 images, vacancy images >= 6 A) of every distinct
  Li hop of the barrier phases Li2Sn5 (27 atoms), LiSn (11), LiIn (15) and
  bcc Li (14): both relaxed endpoints and all images. Li17Sn4, the third
  barrier phase of the study, has no cell under 100 atoms and is covered only
  by the Li-rich phases' environments;
* dilute Li in In and in beta-Sn (16 host sites; substitutional and
  interstitial), relaxed on SevenNet-0 at fixed cell, and a rattled copy;
* added later (``label_extend.py``, recorded in the set's ``notes["extensions"]``):
  a study's predicted near-hull orderings at the geometry its potential
  chose, relaxed and strained +-2 % (group ``search:<name>``), where the
  fine-tuned potential was shown to err (LiIn2, L1_0 LiIn, Li5Sn too deep).

Random numbers: one ``numpy`` generator per structure, seeded with
``SEED`` and the crc32 of its label, so adding or removing a structure
changes no other.

Split (``split``): every structure belongs to a *group* (a phase with all its
strained, rattled and vacancy cells; one NEB hop with all its images; one
dilute cell). Validation groups, by a fixed rule: the phases Li3In2 and
Li13Sn5 (one hull phase inside each system's composition range, each
bracketed by training phases) and, for each barrier phase with more than one
distinct hop, its longest hop. Then duplicates are removed: a structure that
matches (pymatgen StructureMatcher) an earlier one is dropped, and a
validation structure matching a training one is dropped from validation
(typically a held-out hop's endpoint that another hop's band also has). So
fine-tuning never sees a validation structure.

Order (``PRIORITY``): relaxed phases first (formation energies), then strains
together with the bands' endpoints and saddles (so that the small cells'
DFT//ML barriers come early), dilute cells, rattles and other images,
vacancies; within a priority, cheapest first by the cost model
(``cost_model``). The order never changes a key: reordering only changes
what is computed next.

Progress: ``DIR/progress.json`` and ``DIR/progress.md`` after every label
(done / total, CPU seconds per label, projected remaining CPU time from the
cost model scaled to the labels done); ``DIR/manifest.json``: every structure,
its group, split and key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ALLOYFLOW_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "labels"
DEFAULT_DEST = ROOT / "alloyflow" / "data" / "labels"
CAMPAIGN_VERSION = 1
SEED = 16  # issue 16

LAUNCH = ("cd /work/main && OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 ALLOYFLOW_THREADS=1 setsid nohup sh -c "
          "'echo 19 > /proc/self/autogroup; exec nice -n 19 .venv/bin/python benchmarks/label_campaign.py run --workers 2' "
          ">> benchmarks/out/labels.log 2>&1 < /dev/null &")
"""How the campaign runs in the background (two single points at once, one core each, lowest priority, survives
the shell); rerun it to resume.

``setsid`` puts it in a scheduler autogroup of its own, where ``nice`` alone only ranks it against itself:
the autogroup's own nice value (19) is what leaves the foreground its share of the cores.
"""

DFT_SETTINGS = {"ecut": 600.0, "kpt_density": 6.0}
"""GPAW settings of every label: the registry defaults (``GPAW_DEFAULTS``: PW 600 eV, k-density 6/Å⁻¹,
Fermi-Dirac 0.1 eV), given explicitly and in the form ``alloyflow refine --ecut 600 --kpt-density 6``
passes them, so its single points and these labels share keys. Why not cheaper (``converge``, on LiSn, Li,
beta-Sn, In and a rattled LiSn): the LiSn formation energy and the forces are converged from 300 eV
(within 1 meV/atom and 2 meV/Å of 600 eV), but the stress is not: that of In, Sn and LiSn moves by 2.5-6 GPa
between 300-400 and 600 eV and by 0.4-0.7 GPa between 500 and 600 eV (Pulay stress), and stress is a
training target. The
k-point density moves the formation energy by up to 10 meV/atom between 3 and 5/Å and by about 4 meV/atom
between 5 and 6, so 6 is kept (see ``convergence.json``)."""
DEFAULT_WIDTH = 0.1

SYSTEMS = ("Li-In", "Li-Sn")
VALIDATION_PHASES = ("Li3In2", "Li13Sn5")
NEB_PHASES = (("Li2Sn5", "Li-Sn"), ("LiSn", "Li-Sn"), ("LiIn", "Li-In"), ("Li", "Li-Sn"))
DILUTE_HOSTS = (("In", "Li-In"), ("Sn", "Li-Sn"))
VALENCE = {"Li": 1, "In": 13, "Sn": 14}  # GPAW 26.7 / gpaw-data 1.2.1 PBE setups

PRIORITY = {
    "relaxed": 0,
    "strain": 1, "neb_endpoint": 1, "neb_saddle": 1,  # the bands' endpoints and saddles: DFT//ML barriers early
    "dilute": 2,
    "rattle": 3, "neb_image": 3, "vacancy": 3,
    "shear": 4, "rattle_strained": 4, "vacancy_unrelaxed": 4, "dilute_rattle": 4,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}", flush=True)


@dataclass
class CampaignConfig:
    """What the structure set holds; the defaults are the campaign's."""

    systems: tuple = SYSTEMS
    phases: tuple | None = None  # restrict to these phase names (elements always kept); None: all
    max_atoms: int = 30
    ml_calculator: str = "sevennet"
    strain: float = 0.02
    rattle: tuple = (0.05, 0.10)
    min_rattle_atoms: int = 8
    neb_phases: tuple = NEB_PHASES
    n_images: int = 3
    min_image_distance: float = 6.0
    vacancy_image_distances: tuple = (6.0, 5.5, 5.0, 4.5)
    dilute_hosts: tuple = DILUTE_HOSTS
    dilute_host_sites: int = 16
    validation_phases: tuple = VALIDATION_PHASES
    seed: int = SEED


@dataclass
class Item:
    """One structure to label."""

    label: str
    group: str
    kind: str
    system: str
    structure: object = field(repr=False)
    meta: dict = field(default_factory=dict)
    split: str = "train"

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]

    def key(self, dft: str, dft_kwargs: dict) -> str:
        from alloyflow.workflows.jobs.labels import LabelMaker

        return LabelMaker(calculator=dft, calculator_kwargs=dft_kwargs).key(self.structure)

    def fingerprint_hash(self) -> str:
        from alloyflow.engine import input_hash, structure_fingerprint

        return input_hash(structure_fingerprint(self.structure))


# --------------------------------------------------------------------------- structures


def rng_for(label: str, seed: int = SEED) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def strained(structure, strain_matrix):
    from pymatgen.core import Lattice, Structure

    f = np.eye(3) + np.asarray(strain_matrix, dtype=float)
    return Structure(Lattice(structure.lattice.matrix @ f.T), structure.species, structure.frac_coords)


def random_strain(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    voigt = rng.uniform(-amplitude, amplitude, 6)
    e = np.diag(voigt[:3])
    e[1, 2] = e[2, 1] = voigt[3] / 2
    e[0, 2] = e[2, 0] = voigt[4] / 2
    e[0, 1] = e[1, 0] = voigt[5] / 2
    return e


def rattled(structure, std: float, rng: np.random.Generator):
    from pymatgen.core import Structure

    return Structure(structure.lattice, structure.species, structure.cart_coords + rng.normal(0, std, (len(structure), 3)),
                     coords_are_cartesian=True)


def at_least(structure, n: int):
    """``structure`` doubled along its shortest lattice vector until it has ``n`` atoms or more."""
    s = structure.copy()
    while len(s) < n:
        m = np.eye(3, dtype=int)
        k = int(np.argmin(s.lattice.abc))
        m[k, k] = 2
        s.make_supercell(m)
    return s


def ml_relaxed(store, lib, name: str, system: str, calculator: str = "sevennet"):
    """The hull's keyed relaxation (same maker and key as ``alloyflow hull``) of a library phase."""
    from alloyflow.engine import run_cached
    from alloyflow.structures.library import primitive
    from alloyflow.workflows.jobs.backends import relax_maker_for
    from alloyflow.workflows.jobs.relax import RelaxationDocument

    job = relax_maker_for(calculator).keyed_job(primitive(lib.get(name, system).structure), label=name)
    run_cached(job, store)
    return store.document(job.uuid, RelaxationDocument)


def ml_relaxed_ions(store, structure, label: str, calculator: str):
    """Ions relaxed at fixed cell (vacancy and dilute cells), a keyed job."""
    from alloyflow.engine import run_cached
    from alloyflow.workflows.jobs.relax import RelaxationDocument, RelaxMaker

    job = RelaxMaker(calculator=calculator, relax_cell=False, fix_symmetry=False, fmax=0.03, steps=300).keyed_job(
        structure, label=label)
    run_cached(job, store)
    return store.document(job.uuid, RelaxationDocument)


def vacancy_cell(structure, max_sites: int, distances, min_sites: int = 10) -> tuple[object, dict] | None:
    """A Li-vacancy supercell (first Li site removed) of at most ``max_sites`` sites.

    The smallest supercell whose vacancy images are ``distances[0]`` apart, else
    ``distances[1]``...; if none fits, the cell itself or the cell doubled
    along its shortest vector, whichever fits with the images farther apart
    (and has at least ``min_sites`` sites): a concentrated vacancy, still a
    useful training configuration.
    """
    from alloyflow.structures.supercells import vacancy_supercell_matrix

    def shortest(m):
        return float(min(Lattice(np.asarray(m) @ structure.lattice.matrix).get_niggli_reduced_lattice().abc))

    from pymatgen.core import Lattice

    matrix = None
    for d in distances:
        try:
            choice = vacancy_supercell_matrix(structure, d, max_atoms=max_sites)
        except ValueError:
            continue
        matrix = np.asarray(choice.matrix, dtype=int)
        break
    if matrix is None:
        options = [np.eye(3, dtype=int)]
        m = np.eye(3, dtype=int)
        m[int(np.argmin(structure.lattice.abc)), int(np.argmin(structure.lattice.abc))] = 2
        options.append(m)
        options = [m for m in options if min_sites <= round(abs(np.linalg.det(m))) * len(structure) <= max_sites]
        if not options:
            return None
        matrix = max(options, key=shortest)
    sc = structure.copy()
    sc.make_supercell(matrix)
    li = next(i for i, site in enumerate(sc) if site.species_string == "Li")
    sc.remove_sites([li])
    return sc, {"matrix": matrix.tolist(), "min_image_distance": round(shortest(matrix), 4)}


def campaign_phases(lib, config: CampaignConfig):
    """``[(phase name, system, primitive natoms)]`` kept, and ``[(name, natoms)]`` left out by size."""
    from alloyflow.structures.library import primitive

    kept, too_big, seen = [], [], set()
    for system in config.systems:
        for p in lib.phases(system):
            if p.name in seen or p.status == "user":
                continue
            if config.phases is not None and p.name not in config.phases and len(p.elements) > 1:
                continue
            seen.add(p.name)
            n = len(primitive(p.structure))
            (kept if n <= config.max_atoms else too_big).append((p.name, system, n) if n <= config.max_atoms
                                                               else (p.name, n))
    return kept, too_big


def phase_items(name: str, system: str, relaxed, config: CampaignConfig, elemental: bool) -> list[Item]:
    group = f"phase:{name}"
    base = f"{system if not elemental else 'element'}/{name}"
    items = [Item(f"{base}/relaxed", group, "relaxed", system, relaxed)]
    for sign in (-1, 1):
        eps = sign * config.strain
        items.append(Item(f"{base}/strain{eps:+.0%}", group, "strain", system, strained(relaxed, eps * np.eye(3)),
                          {"strain": eps}))
    lab = f"{base}/shear"
    e = random_strain(rng_for(lab, config.seed), config.strain)
    items.append(Item(lab, group, "shear", system, strained(relaxed, e), {"strain": e.round(6).tolist()}))
    big = at_least(relaxed, config.min_rattle_atoms)
    std0, std1 = config.rattle
    lab = f"{base}/rattle{std0:g}"
    items.append(Item(lab, group, "rattle", system, rattled(big, std0, rng_for(lab, config.seed)),
                      {"rattle_std": std0, "natoms_cell": len(big)}))
    lab = f"{base}/rattle{std1:g}-strained"
    rng = rng_for(lab, config.seed)
    e = random_strain(rng, config.strain)
    items.append(Item(lab, group, "rattle_strained", system, rattled(strained(big, e), std1, rng),
                      {"rattle_std": std1, "strain": e.round(6).tolist()}))
    return items


def neb_items(store, name: str, system: str, relaxed, config: CampaignConfig, log_fn) -> tuple[list[Item], dict]:
    from alloyflow.engine import JobFailed, run_cached
    from alloyflow.structures.migration import distinct_hops, vacancy_hop_endpoints
    from alloyflow.workflows.jobs.backends import neb_maker_for
    from alloyflow.workflows.jobs.neb import NebDocument

    maker = neb_maker_for(config.ml_calculator, n_images=config.n_images)
    items, info = [], {"phase": name, "hops": []}
    hops = distinct_hops(relaxed)
    for hop in hops:
        hop_info = {"hop": hop.id, "length": round(hop.length, 4), "multiplicity": hop.multiplicity}
        try:
            initial, final, ep = vacancy_hop_endpoints(relaxed, hop, config.min_image_distance)
        except ValueError as exc:
            info["hops"].append({**hop_info, "skipped": str(exc)})
            continue
        if len(initial) > config.max_atoms:
            info["hops"].append({**hop_info, "skipped": f"{len(initial)} atoms > {config.max_atoms}"})
            continue
        job = maker.keyed_job(initial, final, label=f"{name} hop {hop.id}")
        t0 = time.perf_counter()
        try:
            run_cached(job, store)
        except JobFailed as exc:
            info["hops"].append({**hop_info, "skipped": f"NEB failed: {exc}"})
            continue
        out = store.output(job.uuid)
        if isinstance(out, dict) and "endpoint_error" in out:
            info["hops"].append({**hop_info, "skipped": f"endpoint error: {out['endpoint_error']}"})
            continue
        band = store.document(job.uuid, NebDocument)
        log_fn(f"  {name} hop {hop.id} ({hop.length:.2f} Å, {len(initial)} atoms): {config.ml_calculator} barrier "
               f"{1000 * band.forward_barrier:.0f} meV, converged {band.converged} ({time.perf_counter() - t0:.0f} s)")
        group = f"hop:{name}/{hop.id}"
        last = len(band.images) - 1
        for k, image in enumerate(band.images):
            kind = ("neb_endpoint" if k in (0, last) else "neb_saddle" if k == band.climbing_image else "neb_image")
            items.append(Item(f"{system}/{name}/hop{hop.id}/image{k}", group, kind, system, image,
                              {"hop": hop.id, "image": k, "ml_energy": band.energies[k], "hop_length": hop.length}))
        info["hops"].append({**hop_info, "natoms": len(initial), "ml_barrier_eV": band.forward_barrier,
                             "ml_converged": band.converged, "group": group})
    return items, info


def dilute_items(store, host: str, system: str, relaxed, config: CampaignConfig) -> list[Item]:
    from alloyflow.structures.migration import dilute_li_supercell

    items = []
    for mode in ("substitution", "interstitial"):
        n = config.dilute_host_sites - config.dilute_host_sites % len(relaxed)
        cell, info = dilute_li_supercell(relaxed, n_host_sites=n, mode=mode)
        label = f"{system}/dilute-Li-in-{host}/{mode}"
        doc = ml_relaxed_ions(store, cell, label, config.ml_calculator)
        group = f"dilute:{host}/{mode}"
        items.append(Item(label, group, "dilute", system, doc.structure, {**info, "ml_converged": doc.converged}))
        lab = f"{label}/rattle{config.rattle[0]:g}"
        items.append(Item(lab, group, "dilute_rattle", system,
                          rattled(doc.structure, config.rattle[0], rng_for(lab, config.seed)),
                          {"rattle_std": config.rattle[0]}))
    return items


def build_structure_set(store, config: CampaignConfig | None = None, log_fn=log) -> tuple[list[Item], dict]:
    """Every structure of the campaign (ML relaxations and bands run as keyed jobs in ``store``), split, ordered.

    Returns the items (train and validation, cheapest-most-valuable first) and a
    summary of what was left out and why.
    """
    from alloyflow.structures.library import StructureLibrary

    config = config or CampaignConfig()
    lib = StructureLibrary()
    kept, too_big = campaign_phases(lib, config)
    relaxed, notes = {}, {"left_out_phases": [{"phase": n, "natoms": k, "why": f"primitive cell > {config.max_atoms} atoms"}
                                              for n, k in too_big]}
    items: list[Item] = []
    for name, system, _ in kept:
        doc = ml_relaxed(store, lib, name, system, config.ml_calculator)
        relaxed[name] = doc.structure
        elemental = len(doc.structure.composition.elements) == 1
        items += phase_items(name, system, doc.structure, config, elemental)
    notes["ml_relaxations_unconverged"] = []
    neb_names = {n for n, _ in config.neb_phases if n in relaxed}
    notes["neb"] = []
    for name, system in config.neb_phases:
        if name not in relaxed:
            continue
        new, info = neb_items(store, name, system, relaxed[name], config, log_fn)
        items += new
        notes["neb"].append(info)
    notes["vacancy"] = []
    for name, system, _ in kept:
        s = relaxed[name]
        if name in neb_names or "Li" not in {el.symbol for el in s.composition.elements} or len(s.composition) == 1:
            continue
        made = vacancy_cell(s, config.max_atoms + 1, config.vacancy_image_distances)
        if made is None:
            notes["vacancy"].append({"phase": name, "skipped": "no vacancy supercell within the size limit"})
            continue
        cell, info = made
        label = f"{system}/{name}/vacancy"
        doc = ml_relaxed_ions(store, cell, label, config.ml_calculator)
        items.append(Item(label, f"phase:{name}", "vacancy", system, doc.structure, {**info, "ml_converged": doc.converged}))
        items.append(Item(f"{label}-unrelaxed", f"phase:{name}", "vacancy_unrelaxed", system, cell, info))
        notes["vacancy"].append({"phase": name, "natoms": len(cell), **info})
    for host, system in config.dilute_hosts:
        if host in relaxed:
            items += dilute_items(store, host, system, relaxed[host], config)
    items = split(items, validation_groups(config, notes))
    items, dropped = deduplicate(items)
    notes["dropped_duplicates"] = dropped
    return ordered(items), notes


def ordered(items: list[Item]) -> list[Item]:
    """Cheapest-most-valuable first: by priority, then by the cost model at the campaign's settings."""
    return sorted(items, key=lambda it: (it.priority, cost_model(it.structure), it.label))


SET_FILE = "structure_set.json.gz"


def save_structure_set(path: Path, items: list[Item], notes: dict, config: CampaignConfig) -> None:
    """Freeze the set: later runs label exactly these structures, whatever the ML jobs would give today.

    Why: a structure recomputed rather than read back can differ in the last
    digits (an ML relaxation or band computed in this process versus one read
    from the store), and any change of the NEB or relax code changes the ML
    geometries; either would change every label key and restart the campaign.
    JSON keeps every float exactly, so a loaded set has the same keys.
    """
    import gzip

    data = {"campaign_version": CAMPAIGN_VERSION, "config": asdict(config), "notes": notes,
            "items": [{"label": it.label, "group": it.group, "kind": it.kind, "system": it.system, "split": it.split,
                       "meta": it.meta, "structure": it.structure.as_dict()} for it in items]}
    tmp = path.with_name(f".{path.name}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(data, fh, default=str)
    tmp.replace(path)


def load_structure_set(path: Path) -> tuple[list[Item], dict]:
    import gzip

    from pymatgen.core import Structure

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    if data.get("campaign_version") != CAMPAIGN_VERSION:
        raise SystemExit(f"{path} is campaign version {data.get('campaign_version')}, this script {CAMPAIGN_VERSION}: "
                         "use --rebuild (or another --out)")
    items = [Item(d["label"], d["group"], d["kind"], d["system"], Structure.from_dict(d["structure"]), d["meta"],
                  d["split"]) for d in data["items"]]
    return items, data["notes"]


REPO_SET = ROOT / "benchmarks" / "label_structure_set.json.gz"
"""The frozen structure set, committed: a fresh checkout (where ``benchmarks/out`` is empty) labels the same
structures under the same keys as the sessions before it, and finds their labels in ``alloyflow/data/labels``."""


def structure_set(store, out: Path, config: CampaignConfig, rebuild: bool = False, log_fn=log,
                  repo_set: Path | None = None, dest: Path | None = DEFAULT_DEST) -> tuple[list[Item], dict]:
    """The frozen set: ``out``'s, else ``repo_set``'s, else a new one, built and frozen in both.

    ``repo_set`` is ``REPO_SET`` for the campaign itself (default folder and settings) and None otherwise,
    so that a trial campaign elsewhere never replaces the committed set.

    A new set (``rebuild``, or neither file) takes the labelled geometry of every item whose label the
    exported extxyz in ``dest`` already holds (``adopt_exported``), so no label is lost to a rebuild.
    """
    path = out / SET_FILE
    for frozen in (path, repo_set):
        if frozen is not None and frozen.is_file() and not rebuild:
            log_fn(f"structure set: {frozen} (frozen; --rebuild to build anew)")
            items, notes = load_structure_set(frozen)
            if frozen != path:
                path.write_bytes(frozen.read_bytes())
            return ordered(items), notes  # the order may follow a better cost model; the structures never change
    log_fn(f"building the structure set ({config.ml_calculator} relaxations and bands are keyed jobs in {out})")
    items, notes = build_structure_set(store, config, log_fn)
    if dest is not None:
        notes["adopted_from_exported_labels"] = adopt_exported(items, read_exported(dest), log_fn)
    save_structure_set(path, items, notes, config)
    if repo_set is not None:
        repo_set.write_bytes(path.read_bytes())
    return items, notes


def read_exported(dest: Path) -> dict:
    """``{label: (Atoms, file name, file sha256)}`` of the exported extxyz labels in ``dest`` (empty if none)."""
    import hashlib

    from ase.io import read

    frames = {}
    for path in sorted(Path(dest).glob("li_in_sn_*.extxyz")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        for atoms in read(path, index=":", format="extxyz"):
            frames[atoms.info["label"]] = (atoms, path.name, digest)
    return frames


def largest_shift(a, b) -> float:
    """Largest distance (Å, through the periodic boundary) between matching sites of two same-order structures."""
    d = np.asarray(a.frac_coords) - np.asarray(b.frac_coords)
    d -= np.round(d)
    return float(np.abs(d @ a.lattice.matrix).max(initial=0.0))


def same_geometry(atoms, structure, tol: float = 1e-5) -> bool:
    """Whether an exported frame is ``structure`` (same sites in the same order, within ``tol`` Å)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    s = AseAtomsAdaptor.get_structure(atoms)
    return ([x.species_string for x in s] == [x.species_string for x in structure]
            and largest_shift(s, structure) <= tol
            and float(np.abs(s.lattice.matrix - structure.lattice.matrix).max()) <= tol)


def adopt_exported(items: list[Item], frames: dict, log_fn=log) -> list[dict]:
    """Give every item with an exported label (same label name, species and order) the labelled geometry.

    A rebuilt set can differ from the one labelled before (a newer NEB or relaxation default, or the last
    digits of a recomputed ML job); the label was computed on the exported geometry, so that one is kept.
    Returns one record per adopted item with the largest site shift from the rebuilt geometry.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    adopted = []
    for it in items:
        if it.label not in frames:
            continue
        atoms = frames[it.label][0]
        s = AseAtomsAdaptor.get_structure(atoms)
        if [x.species_string for x in s] != [x.species_string for x in it.structure]:
            log_fn(f"  not adopted: {it.label}: the exported label has other sites ({s.formula} vs {it.structure.formula})")
            continue
        shift = largest_shift(s, it.structure)
        strain = float(np.abs(s.lattice.matrix - it.structure.lattice.matrix).max())
        it.structure = s
        adopted.append({"label": it.label, "max_site_shift_A": round(shift, 6), "max_lattice_change_A": round(strain, 6)})
    if adopted:
        log_fn(f"adopted the labelled geometry of {len(adopted)} exported labels (largest site shift "
               f"{max(a['max_site_shift_A'] for a in adopted):.2e} Å from the rebuilt set)")
    return adopted


def store_done_elsewhere(store, out: Path, rows, log_fn=log, what: str = "") -> int:
    """Store single points computed elsewhere as the campaign's keyed labels; returns how many.

    ``rows``: ``(item label, key, document, cpu seconds, wall seconds, where from)``. Each document is
    stored under its ``LabelMaker`` key (``stored_label``), so the campaign reuses it as one it computed; a
    positive CPU time goes into ``cpu_seconds.json`` for the cost model.
    """
    from alloyflow.engine import keyed, run_cached
    from alloyflow.workflows.jobs.labels import stored_label

    cpu_path = out / "cpu_seconds.json"
    cpu = json.loads(cpu_path.read_text()) if cpu_path.is_file() else {}
    n = 0
    for label, key, doc, cpu_s, wall_s, origin in rows:
        run_cached(keyed(stored_label(doc), key, label=f"label {label}"), store)
        if cpu_s and cpu_s > 0 and key not in cpu:
            cpu[key] = {"cpu_seconds": cpu_s, "wall_seconds": wall_s, "natoms": doc["natoms"], "label": label,
                        "finished": f"before ({origin})"}
        n += 1
    if n:
        cpu_path.write_text(json.dumps(cpu, indent=1))
        if what:
            log_fn(f"{what}: {n}")
    return n


def seed_from_exported(store, out: Path, items: list[Item], frames: dict, dft: str, dft_kwargs: dict,
                       log_fn=log) -> int:
    """Store the exported labels that the store lacks (same label, same geometry to 1e-5 Å), keyed as computed.

    Returns how many were seeded. Their CPU seconds (from the extxyz) go into ``cpu_seconds.json`` for
    the cost model. A frame whose geometry differs from its item's is left out and named.
    """
    from alloyflow.calculators import calculator_info

    maker = label_maker(dft, dft_kwargs)
    rows = []
    for it in items:
        if it.label not in frames:
            continue
        atoms, name, digest = frames[it.label]
        job = maker.keyed_job(it.structure, it.label)
        if stored_label(store, job):
            continue
        key = job.metadata["alloyflow_key"]
        if not same_geometry(atoms, it.structure):
            log_fn(f"  not seeded: {it.label}: the exported geometry is not this item's (left to compute)")
            continue
        if atoms.info.get("ecut_eV") is not None and (float(atoms.info["ecut_eV"]) != float(dft_kwargs.get("ecut"))
                                                      or float(atoms.info["kpt_density"]) != float(dft_kwargs.get("kpt_density"))):
            log_fn(f"  not seeded: {it.label}: exported at other settings")
            continue
        seconds = float(atoms.info.get("dft_cpu_seconds", -1.0))
        doc = {"label": it.label, "structure": it.structure.as_dict(), "energy": float(atoms.get_potential_energy()),
               "forces": atoms.get_forces().tolist(), "stress": atoms.get_stress().tolist(), "natoms": len(atoms),
               "calculator": calculator_info(dft), "settings": dict(dft_kwargs), "input_hash": key,
               "elapsed_seconds": seconds, "seeded_from": {"file": name, "sha256": digest}}
        rows.append((it.label, key, doc, seconds, -1.0, "seeded from the exported labels"))
    return store_done_elsewhere(store, out, rows, log_fn,
                                what="labels seeded from the exported extxyz (computed in earlier runs)")


# --------------------------------------------------------------------------- split


def validation_groups(config: CampaignConfig, notes: dict) -> set[str]:
    """The fixed rule: the validation phases, and the longest hop of each barrier phase with more than one hop."""
    groups = {f"phase:{p}" for p in config.validation_phases}
    for info in notes.get("neb", []):
        hops = [h for h in info["hops"] if "group" in h]
        if len(hops) > 1:
            groups.add(max(hops, key=lambda h: (h["length"], h["hop"]))["group"])
    return groups


def split(items: list[Item], groups: set[str]) -> list[Item]:
    for it in items:
        it.split = "validation" if it.group in groups else "train"
    return items


def deduplicate(items: list[Item], against: list[Item] = ()) -> tuple[list[Item], list[dict]]:
    """Drop structures that match an earlier one (training ones first), so validation never repeats training.

    ``against``: structures already in the set (never dropped); an item matching one of them is dropped.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    # tight: a 0.05 Å rattle or a 2 % strain is a new structure; symmetry-equivalent relaxed cells are not
    matcher = StructureMatcher(ltol=0.002, stol=0.01, angle_tol=0.1, primitive_cell=False, scale=False,
                               attempt_supercell=False)
    ordered = sorted(items, key=lambda it: (it.split != "train", it.priority, it.label))
    kept, dropped = [], []
    for it in ordered:
        twin = next((k for k in [*against, *kept] if len(k.structure) == len(it.structure)
                     and k.structure.composition == it.structure.composition
                     and abs(k.structure.volume - it.structure.volume) < 1e-3 * it.structure.volume
                     and matcher.fit(k.structure, it.structure)), None)
        if twin is None:
            kept.append(it)
        else:
            dropped.append({"label": it.label, "split": it.split, "same_as": twin.label})
    return kept, dropped


# --------------------------------------------------------------------------- cost


def kpoint_grid(structure, density: float) -> list[int]:
    from ase.calculators.calculator import kpts2sizeandoffsets
    from pymatgen.io.ase import AseAtomsAdaptor

    size, _ = kpts2sizeandoffsets(density=density, gamma=True, atoms=AseAtomsAdaptor.get_atoms(structure))
    return [int(x) for x in size]


def irreducible_kpoints(structure, density: float) -> int:
    import spglib

    mesh = kpoint_grid(structure, density)
    cell = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    mapping, _ = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=[0, 0, 0], symprec=1e-3)
    return len(np.unique(mapping))


_COSTS: dict = {}


def cost_model(structure, density: float | None = None, ecut: float | None = None) -> float:
    """Relative GPAW cost of a single point: FFT grid points x irreducible k-points x valence electrons.

    The grid and the k-points are GPAW's own (its symmetry analysis, its
    symmetrised FFT grid), which matters: a rhombohedral or body-centred
    tetragonal primitive cell gets an N x N x N grid sized by its longest
    vector (Li8Sn3: 63^3 points at 600 eV where Li13Sn5, 18 atoms, has
    27 x 27 x 98), and on the first 12 labels this model predicts the CPU time
    to within a factor 1.5 (Li8Sn3: 1046 s predicted, 1031 s measured), where
    atoms x electrons x k-points was off by 3.5. Without GPAW:
    atoms x electrons x spglib's irreducible k-points.
    """
    density = DFT_SETTINGS["kpt_density"] if density is None else density
    ecut = DFT_SETTINGS["ecut"] if ecut is None else ecut
    key = (Item("", "", "relaxed", "", structure).fingerprint_hash(), float(density), float(ecut))
    if key not in _COSTS:
        electrons = sum(VALENCE.get(s.species_string, 4) for s in structure)
        try:
            _COSTS[key] = float(gpaw_grid_points(structure, ecut) * gpaw_kpoints(structure, density) * electrons)
        except Exception:  # no GPAW (CI without it): the coarser model
            _COSTS[key] = float(len(structure) * electrons * irreducible_kpoints(structure, density)) * 1e4
    return _COSTS[key]


def _gpaw_symmetry(structure):
    from gpaw.new.symmetry import create_symmetries_object
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    return atoms, create_symmetries_object(atoms)


def gpaw_kpoints(structure, density: float) -> int:
    """GPAW's irreducible k-points for a Gamma-centred grid of ``density``."""
    from ase.calculators.calculator import kpts2sizeandoffsets
    from gpaw.new.brillouin import MonkhorstPackKPoints

    atoms, sym = _gpaw_symmetry(structure)
    size, offsets = kpts2sizeandoffsets(density=density, gamma=True, atoms=atoms)
    return len(MonkhorstPackKPoints(size, offsets).reduce(sym, strict=False))


def gpaw_grid_points(structure, ecut: float) -> int:
    """GPAW's FFT grid points in plane-wave mode at ``ecut`` eV (symmetrised as GPAW does)."""
    from types import SimpleNamespace

    from ase.units import Bohr, Hartree
    from gpaw.utilities.gpts import get_number_of_grid_points

    atoms, sym = _gpaw_symmetry(structure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = get_number_of_grid_points(atoms.cell.array / Bohr, mode=SimpleNamespace(name="pw", ecut=ecut / Hartree),
                                      realspace=False, symmetry=sym._old_symmetry)
    return int(np.prod(n))


# --------------------------------------------------------------------------- labelling


def dft_kwargs_from(args) -> dict:
    """The label settings as ``alloyflow refine`` passes them (width only when not the default): same keys."""
    kwargs = {"ecut": float(args.ecut), "kpt_density": float(args.kpt_density)}
    if float(args.width) != DEFAULT_WIDTH:
        kwargs["width"] = float(args.width)
    return kwargs


def label_maker(dft: str, dft_kwargs: dict):
    from alloyflow.workflows.jobs.labels import LabelMaker

    return LabelMaker(calculator=dft, calculator_kwargs=dict(dft_kwargs))


def stored_label(store, job, cpu: dict | None = None) -> bool:
    """Whether the label ``job`` (``LabelMaker.keyed_job``) computes is stored.

    A label stored under its key from before the face wrap
    (``alloyflow.engine.keys.earlier_key``) counts: ``is_finished`` copies it
    under today's uuid, and its CPU record in ``cpu`` (``cpu_seconds.json``)
    is carried over to today's key, so it is neither computed again nor
    exported without its cost.
    """
    from alloyflow.engine import is_finished
    from alloyflow.engine.keys import EARLIER_KEY

    if not is_finished(store.jobstore, job):
        return False
    key, earlier = job.metadata["alloyflow_key"], job.metadata.get(EARLIER_KEY)
    if cpu is not None and key not in cpu and earlier in cpu:
        cpu[key] = dict(cpu[earlier])
    return True


def resolved_settings(dft: str, dft_kwargs: dict) -> dict:
    if dft == "gpaw":
        from alloyflow.calculators.dft import gpaw_settings

        return gpaw_settings(**dft_kwargs)
    return dict(dft_kwargs)


MIN_FIT_SECONDS = 10.0
"""Labels faster than this are mostly start-up (1-2 atom cells): left out of the fit."""
COST_REF = 1e9


def fit_cost(timed: list[tuple[dict, float]]) -> dict | None:
    """CPU seconds ~ ``scale * (cost / COST_REF) ** exponent`` by least squares in logs over the timed labels.

    The exponent is fitted only once the labels span a factor 5 in cost (else 1,
    and the scale is the median ratio), and kept within [0.8, 1.6]: the model's
    atoms x electrons x k-points misses the cubic orthogonalisation of larger cells.
    """
    pts = [(m, c["cpu_seconds"]) for c, m in timed if c["cpu_seconds"] >= MIN_FIT_SECONDS] or \
        [(m, c["cpu_seconds"]) for c, m in timed if c["cpu_seconds"] > 0]
    if not pts:
        return None
    x = np.log(np.array([m for m, _ in pts]) / COST_REF)
    y = np.log(np.array([t for _, t in pts]))
    if len(pts) >= 4 and x.max() - x.min() > np.log(5):
        exponent = float(np.clip(np.polyfit(x, y, 1)[0], 0.8, 1.6))
    else:
        exponent = 1.0
    scale = float(np.exp(np.median(y - exponent * x)))
    return {"scale_seconds_at_ref": scale, "cost_ref": COST_REF, "exponent": exponent, "n": len(pts)}


def predicted_seconds(fit: dict, cost: float) -> float:
    return fit["scale_seconds_at_ref"] * (cost / fit["cost_ref"]) ** fit["exponent"]


class Progress:
    """``progress.json`` / ``progress.md`` / ``cpu_seconds.json`` / ``failures.json`` in the campaign folder."""

    def __init__(self, out: Path, items: list[Item], dft: str, dft_kwargs: dict):
        self.out, self.items, self.dft, self.dft_kwargs = out, items, dft, dft_kwargs
        maker = label_maker(dft, dft_kwargs)
        self.keys = {it.label: maker.key(it.structure) for it in items}
        self.costs = {it.label: cost_model(it.structure, dft_kwargs.get("kpt_density"), dft_kwargs.get("ecut"))
                      for it in items}
        self.cpu = self._read("cpu_seconds.json")
        self.failures = self._read("failures.json")
        self.done: dict[str, dict] = {}
        self.t_start = time.time()
        self.computed_now = 0

    def _read(self, name: str) -> dict:
        path = self.out / name
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write(self, name: str, text: str) -> None:
        tmp = self.out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.out / name)

    def record(self, item: Item, doc: dict, cpu: float | None, reused: bool) -> None:
        key = self.keys[item.label]
        if not reused and cpu is not None:
            self.cpu[key] = {"cpu_seconds": cpu, "wall_seconds": doc["elapsed_seconds"], "natoms": doc["natoms"],
                             "label": item.label, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            self.write_cpu()
            self.computed_now += 1
        self.done[item.label] = {"wall_seconds": doc["elapsed_seconds"], "reused": reused}
        self.failures.pop(key, None)

    def write_cpu(self) -> None:
        self._write("cpu_seconds.json", json.dumps(self.cpu, indent=1))

    def fail(self, item: Item, error: str) -> None:
        self.failures[self.keys[item.label]] = {"label": item.label, "error": error[-2000:],
                                                "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._write("failures.json", json.dumps(self.failures, indent=1))

    def summary(self, running: str = "") -> dict:
        done = [it for it in self.items if it.label in self.done]
        pending = [it for it in self.items if it.label not in self.done]
        timed = [(self.cpu[self.keys[it.label]], self.costs[it.label]) for it in done if self.keys[it.label] in self.cpu]
        fit = fit_cost(timed)
        remaining = (0.0 if not pending else None if fit is None
                     else sum(predicted_seconds(fit, self.costs[it.label]) for it in pending))
        cpu_done = sum(c["cpu_seconds"] for c, _ in timed)
        by_split = {s: {"done": sum(1 for it in done if it.split == s),
                        "total": sum(1 for it in self.items if it.split == s)} for s in ("train", "validation")}
        return {
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "campaign_version": CAMPAIGN_VERSION,
            "dft": self.dft, "dft_settings": resolved_settings(self.dft, self.dft_kwargs),
            "labels_done": len(done), "labels_total": len(self.items), "by_split": by_split,
            "failed": len(self.failures), "running": running,
            "timed_labels": len(timed), "cpu_seconds_done": cpu_done,
            "cpu_seconds_per_label_mean": cpu_done / len(timed) if timed else None,
            "cost_fit": fit,
            "largest_timed_cost": max((m for _, m in timed), default=0.0),
            "largest_cost": max(self.costs.values(), default=0.0),
            "projected_remaining_cpu_hours": None if remaining is None else remaining / 3600,
            "projected_total_cpu_hours": None if remaining is None else (remaining + cpu_done) / 3600,
            "per_label": [{"label": it.label, "split": it.split, "natoms": len(it.structure),
                           **{k: round(v, 1) for k, v in self.cpu[self.keys[it.label]].items()
                              if k in ("cpu_seconds", "wall_seconds")}}
                          for it in done if self.keys[it.label] in self.cpu],
        }

    def write(self, running: str = "") -> dict:
        s = self.summary(running)
        self._write("progress.json", json.dumps(s, indent=1))
        self._write("progress.md", progress_markdown(s))
        return s


def progress_markdown(s: dict) -> str:
    def h(x):
        return "–" if x is None else f"{x:.1f}"

    st = s["dft_settings"]
    lines = [
        "# GPAW label campaign: progress", "",
        f"Updated {s['updated']}. {s['dft']} " + (f"PW {st['ecut']:g} eV, k-density {st['kpt_density']:g}/Å, "
                                                 f"Fermi-Dirac {st['width']:g} eV, GPAW {st.get('gpaw_version')}"
                                                 if s["dft"] == "gpaw" else json.dumps(st)), "",
        f"- labels done: **{s['labels_done']} / {s['labels_total']}** (train {s['by_split']['train']['done']} / "
        f"{s['by_split']['train']['total']}, validation {s['by_split']['validation']['done']} / "
        f"{s['by_split']['validation']['total']}); failed: {s['failed']}",
        f"- CPU time of the labels computed here: {h(s['cpu_seconds_done'] / 3600)} h over {s['timed_labels']} labels "
        f"(mean {h(s['cpu_seconds_per_label_mean'])} s per label)",
        f"- projected: {h(s['projected_remaining_cpu_hours'])} CPU h remaining, "
        f"{h(s['projected_total_cpu_hours'])} CPU h in all (cost model scaled to the labels done"
        + (f": CPU s ≈ {s['cost_fit']['scale_seconds_at_ref']:.0f} × (cost/{s['cost_fit']['cost_ref']:.0e})"
           f"^{s['cost_fit']['exponent']:.2f} "
           f"from {s['cost_fit']['n']} labels, largest timed cost {s['largest_timed_cost']:.0f} of "
           f"{s['largest_cost']:.0f}; beyond the timed range it extrapolates)" if s.get("cost_fit") else ")"),
    ]
    if s.get("running"):
        lines.append(f"- running: {s['running']}")
    lines += ["", "| label | split | atoms | CPU s | wall s |", "|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['split']} | {r['natoms']} | {r.get('cpu_seconds', '')} | {r.get('wall_seconds', '')} |"
              for r in s["per_label"]]
    return "\n".join(lines) + "\n"


def manifest(items: list[Item], notes: dict, config: CampaignConfig, dft: str, dft_kwargs: dict) -> dict:
    return {
        "campaign_version": CAMPAIGN_VERSION,
        "config": {k: v for k, v in asdict(config).items()},
        "dft": dft, "dft_settings": resolved_settings(dft, dft_kwargs),
        "split_rule": ("validation = whole groups: phases " + ", ".join(config.validation_phases)
                       + " (with their strained, rattled and vacancy cells) and the longest hop of each barrier phase "
                       "with more than one distinct hop; duplicates of training structures dropped from validation"
                       + "".join(f"; extension from {e['study']} ({e['system']}): held out {', '.join(e['validation'])}"
                                 for e in notes.get("extensions", []) if e.get("validation"))),
        "validation_groups": sorted({it.group for it in items if it.split == "validation"}),
        "counts": {s: sum(1 for it in items if it.split == s) for s in ("train", "validation")},
        "notes": notes,
        "items": [{"order": k, "label": it.label, "group": it.group, "kind": it.kind, "split": it.split,
                   "natoms": len(it.structure), "formula": it.structure.composition.reduced_formula,
                   "fingerprint": it.fingerprint_hash(), "key": it.key(dft, dft_kwargs),
                   "cost_model": cost_model(it.structure, dft_kwargs.get("kpt_density"), dft_kwargs.get("ecut")),
                   "meta": it.meta}
                  for k, it in enumerate(items)],
    }


def label_campaign(store, out: Path, items: list[Item], dft: str = "gpaw", dft_kwargs: dict | None = None,
                   max_labels: int | None = None, hours: float | None = None, retry_failed: bool = False,
                   workers: int = 1, log_fn=log) -> dict:
    """Label ``items`` in order (stored ones are reused); returns ``{"computed", "reused", "failed", "progress"}``.

    The labels are keyed ``LabelMaker`` jobs run by the engine's local runner (``run_flow``): ``workers``
    > 1 computes that many single points at once, each in a spawned process on one core (the campaign's
    environment pins every thread count to 1), and this process stores each result as it arrives, so a
    kill loses only the labels in flight. The labels and their keys do not depend on ``workers``. A failed
    label is recorded (``failures.json``), skipped by later runs unless ``retry_failed``, and the others
    go on.
    """
    from alloyflow.engine import Budget, JobFailed, RunSummary, run_flow

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dft_kwargs = dict(DFT_SETTINGS if dft_kwargs is None else dft_kwargs)
    maker = label_maker(dft, dft_kwargs)
    progress = Progress(out, items, dft, dft_kwargs)
    counts = {"computed": 0, "reused": 0, "failed": 0, "skipped_failed": 0}
    t0 = time.time()
    # first pass: what is already stored (cheap, no computing)
    pending = []
    cpu_known = len(progress.cpu)
    for it in items:
        job = maker.keyed_job(it.structure, it.label)
        if stored_label(store, job, progress.cpu):
            progress.record(it, store.output(job.uuid), None, reused=True)
            counts["reused"] += 1
        elif progress.keys[it.label] in progress.failures and not retry_failed:
            counts["skipped_failed"] += 1
        else:
            pending.append((it, job))
    if len(progress.cpu) > cpu_known:  # CPU records of labels stored under their earlier keys
        progress.write_cpu()
    progress.write()
    log_fn(f"{counts['reused']} of {len(items)} labels stored; {len(pending)} to compute"
           + (f" with {workers} worker processes" if workers > 1 and pending else ""))

    jobs = {j.name: (it, j) for it, j in pending}  # the runner's job label -> (item, job)
    ticks = _Ticks(store, progress, jobs, counts, log_fn)
    while True:
        left = [j for it, j in jobs.values() if it.label not in progress.done and it.label not in ticks.failed]
        budget = Budget(seconds=None if hours is None else hours * 3600 - (time.time() - t0),
                        max_computed=None if max_labels is None else max_labels - counts["computed"])
        if not left or (why := budget.exhausted(RunSummary())):
            break
        try:
            why = run_flow(left, store, progress=ticks, budget=budget, workers=workers).stopped
        except JobFailed as exc:  # the runner stored the labels in flight; record this one and go on
            ticks.fail(exc.label, str(exc.__cause__ or exc))
            continue
        break
    if left and why:
        log_fn(f"stopping: {why}")
    final = progress.write()
    return {**counts, "progress": final}


class _Ticks:
    """The runner's progress callback: records each computed label, logs it, and lists the labels in flight."""

    def __init__(self, store, progress: Progress, jobs: dict, counts: dict, log_fn):
        self.store, self.progress, self.jobs, self.counts, self.log_fn = store, progress, jobs, counts, log_fn
        self.running: list[str] = []
        self.failed: set[str] = set()

    def begin(self, name: str) -> None:
        self.running.append(self.jobs[name][0].label)
        self.progress.write(running=", ".join(self.running))

    def __call__(self, name: str, reused: bool) -> None:
        it, j = self.jobs[name]
        if it.label in self.running:
            self.running.remove(it.label)
        if reused:  # recorded by the first pass, or by an earlier pass of this run (before a failure)
            if it.label not in self.progress.done:  # found by the runner only
                self.progress.record(it, self.store.output(j.uuid), None, reused=True)
                self.counts["reused"] += 1
            return
        doc = self.store.output(j.uuid)
        self.progress.record(it, doc, doc.get("cpu_seconds"), reused=False)
        self.counts["computed"] += 1
        s = self.progress.write(running=", ".join(self.running))
        eta = s["projected_remaining_cpu_hours"]
        self.log_fn(f"[{s['labels_done']}/{s['labels_total']}] {it.label} ({it.split}, {len(it.structure)} atoms): "
                    f"{doc.get('cpu_seconds', float('nan')):.0f} CPU s, {doc['elapsed_seconds']:.0f} s wall; "
                    f"E = {doc['energy']:.4f} eV" + (f"; projected {eta:.1f} CPU h left" if eta is not None else ""))

    def fail(self, name: str, error: str) -> None:
        it = self.jobs[name][0]
        if it.label in self.running:
            self.running.remove(it.label)
        self.failed.add(it.label)
        self.counts["failed"] += 1
        self.progress.fail(it, error)
        self.log_fn(f"FAILED {it.label}: {error.splitlines()[0] if error else ''}")


# --------------------------------------------------------------------------- export


def export_labels(store, items: list[Item], dest: Path, dft: str = "gpaw", dft_kwargs: dict | None = None,
                  notes: dict | None = None, out: Path | None = None) -> dict:
    """Write the labels done so far as extxyz (train and validation files) plus ``manifest.json`` into ``dest``."""
    import hashlib

    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    from alloyflow.calculators import calculator_info

    dft_kwargs = dict(DFT_SETTINGS if dft_kwargs is None else dft_kwargs)
    maker = label_maker(dft, dft_kwargs)
    settings = resolved_settings(dft, dft_kwargs)
    info_calc = calculator_info(dft)
    dest.mkdir(parents=True, exist_ok=True)
    cpu_file = Path(out) / "cpu_seconds.json" if out is not None else None
    cpu = json.loads(cpu_file.read_text()) if cpu_file is not None and cpu_file.is_file() else {}
    frames = {"train": [], "validation": []}
    previous = read_exported(dest)
    kept_previous = 0
    for it in items:
        job = maker.keyed_job(it.structure, it.label)
        key, uuid = job.metadata["alloyflow_key"], job.uuid
        if not stored_label(store, job, cpu):
            # a label exported before whose store this checkout does not have: kept, never dropped
            old = previous.get(it.label, (None,))[0]
            if old is not None and same_geometry(old, it.structure):
                old.info.update(split=it.split, group=it.group, kind=it.kind, key=key)
                frames[it.split].append(old)
                kept_previous += 1
            continue
        doc = store.output(uuid)
        atoms = AseAtomsAdaptor.get_atoms(it.structure)
        atoms.calc = SinglePointCalculator(atoms, energy=doc["energy"], forces=np.array(doc["forces"]),
                                           stress=np.array(doc["stress"]))
        atoms.info.update(label=it.label, group=it.group, kind=it.kind, split=it.split, system=it.system, key=key,
                          dft=info_calc.get("label", dft), dft_version=str(info_calc.get("version", "")),
                          dft_cpu_seconds=round(float(cpu.get(key, {}).get("cpu_seconds", -1.0)), 1))
        if dft == "gpaw":
            atoms.info.update(gpaw_version=settings["gpaw_version"], gpaw_data_version=settings["gpaw-data_version"],
                              xc=settings["xc"], ecut_eV=settings["ecut"], kpt_density=settings["kpt_density"],
                              kpts="x".join(map(str, kpoint_grid(it.structure, settings["kpt_density"]))),
                              smearing=f"fermi-dirac {settings['width']:g} eV")
        # extxyz cannot hold empty strings: they swallow the next key
        atoms.info = {k: v for k, v in atoms.info.items() if v != ""}
        frames[it.split].append(atoms)
    files = {}
    for s, fr in frames.items():
        path = dest / f"li_in_sn_{dft}_{s}.extxyz"
        if fr:
            write(path, fr, format="extxyz")
            files[path.name] = {"frames": len(fr), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                "bytes": path.stat().st_size}
        elif path.exists():
            path.unlink()
    meta = {
        "description": "GPAW PBE single points (energy eV, forces eV/Å, stress eV/Å³ in ASE's Voigt order and sign) "
                       "of the alloyflow Li-In-Sn label campaign (benchmarks/label_campaign.py, issue 16)",
        "dft": info_calc, "settings": settings, "files": files,
        "counts": {s: len(f) for s, f in frames.items()},
        "total_planned": {s: sum(1 for it in items if it.split == s) for s in frames},
        "validation_groups": sorted({it.group for it in items if it.split == "validation"}),
        "split": {it.label: it.split for it in items},
        "notes": notes or {},
        "kept_from_previous_export": kept_previous,
    }
    conv = Path(out) / "convergence.json" if out is not None else None
    if conv is not None and conv.is_file():
        c = json.loads(conv.read_text())
        meta["convergence"] = {"summary": c["result"]["quantity"], "chosen_by_energy": c["result"]["settings"],
                               "geometry": c["geometry"], "table": c["table"]}
    elif (dest / "manifest.json").is_file():  # a checkout without the campaign folder keeps the check on record
        before = json.loads((dest / "manifest.json").read_text()).get("convergence")
        if before:
            meta["convergence"] = before
    (dest / "manifest.json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


# --------------------------------------------------------------------------- convergence

CONVERGENCE_SCANS = (("ecut", (300.0, 400.0, 500.0, 600.0)), ("kpt_density", (3.0, 4.0, 5.0, 6.0, 7.0)))
CONVERGENCE_TOLERANCE = 0.003  # eV/atom on the LiSn formation energy


def run_convergence(out: Path) -> dict:
    """Converge the LiSn formation energy (cutoff, then k-points); record force and stress deviations too."""
    from alloyflow.engine import ResultStore
    from alloyflow.structures.library import StructureLibrary
    from alloyflow.workflows.jobs.dft_convergence import converge_settings
    from alloyflow.workflows.jobs.labels import LabelMaker

    lib = StructureLibrary()
    folder = out / "convergence"
    with ResultStore(folder) as store:
        docs = {n: ml_relaxed(store, lib, n, "Li-Sn") for n in ("Li", "Sn", "LiSn")}
        docs["In"] = ml_relaxed(store, lib, "In", "Li-In")
        structures = {n: d.structure for n, d in docs.items()}
        structures["LiSn rattled"] = rattled(structures["LiSn"], 0.05, np.random.default_rng(0))
        nat = {n: len(s) for n, s in structures.items()}
        n_li = structures["LiSn"].composition["Li"]
        n_sn = structures["LiSn"].composition["Sn"]

        def formation(e):
            return (e["LiSn"] - n_li * e["Li"] / nat["Li"] - n_sn * e["Sn"] / nat["Sn"]) / nat["LiSn"]

        log("convergence: SevenNet-0 geometries ready; scanning GPAW settings")
        t0 = time.perf_counter()
        result = converge_settings(structures, formation, store, calculator="gpaw", scans=CONVERGENCE_SCANS,
                                   tolerance=CONVERGENCE_TOLERANCE, quantity_name="LiSn formation energy (eV/atom)")
        log(result.summary())

        def doc(settings, name):
            j = LabelMaker(calculator="gpaw", calculator_kwargs=settings).keyed_job(structures[name], name)
            return store.output(j.uuid) if store.has(j.uuid) else None

        rows = []
        for scan in result.scans:
            ref = scan.points[-1].settings
            ref_f = doc(ref, "LiSn rattled")
            ref_s = {n: doc(ref, n) for n in ("In", "LiSn")}
            for p in scan.points:
                d = doc(p.settings, "LiSn rattled")
                row = {"parameter": scan.parameter, **{k: p.settings[k] for k in ("ecut", "kpt_density")},
                       "formation_meV_per_atom": None if p.value is None else 1000 * p.value, "seconds": p.seconds}
                if d and ref_f:
                    row["max_force_dev_meV_per_A"] = 1000 * float(np.abs(np.array(d["forces"]) - ref_f["forces"]).max())
                    row["LiSn_rattled_seconds"] = d["elapsed_seconds"]
                for n in ("In", "LiSn"):
                    dn = doc(p.settings, n)
                    if dn and ref_s[n]:
                        # eV/Å^3 -> GPa
                        row[f"{n}_stress_dev_GPa"] = 160.21766 * float(np.abs(np.array(dn["stress"]) - ref_s[n]["stress"]).max())
                        row[f"{n}_stress_GPa"] = [round(160.21766 * x, 3) for x in dn["stress"][:3]]
                rows.append(row)
        report = {"result": json.loads(result.model_dump_json()), "table": rows,
                  "geometry": "SevenNet-0 relaxed primitive cells; LiSn rattled 0.05 Å, numpy seed 0",
                  "wall_seconds": time.perf_counter() - t0}
    (out / "convergence.json").write_text(json.dumps(report, indent=2))
    for r in rows:
        log(json.dumps(r))
    return report


# --------------------------------------------------------------------------- CLI


def lower_session_priority() -> None:
    """Give this process's scheduler group the lowest priority.

    With autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled`` = 1) ``nice`` only ranks processes
    inside one session: a ``setsid`` campaign at nice 19 still took 70 % of a core next to foreground work on
    this 2-core machine. Writing 19 to ``/proc/self/autogroup`` ranks the whole group last. Silent where the
    kernel has no autogroups.
    """
    try:
        Path("/proc/self/autogroup").write_text("19")
    except OSError:
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("command", choices=["plan", "run", "status", "export", "converge"])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="campaign folder (store, progress, manifest)")
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="export folder for the extxyz labels")
    ap.add_argument("--dft", default="gpaw", help="labelling calculator (registry name)")
    ap.add_argument("--ecut", type=float, default=DFT_SETTINGS["ecut"])
    ap.add_argument("--kpt-density", type=float, default=DFT_SETTINGS["kpt_density"])
    ap.add_argument("--width", type=float, default=DEFAULT_WIDTH)
    ap.add_argument("--max-atoms", type=int, default=CampaignConfig.max_atoms)
    ap.add_argument("--max-labels", type=int, default=None, help="stop after computing this many labels")
    ap.add_argument("--hours", type=float, default=None, help="stop starting labels after this many wall hours")
    ap.add_argument("--retry-failed", action="store_true", help="retry labels that failed in an earlier run")
    ap.add_argument("--workers", type=int, default=1,
                    help="single points at once, one core each (2 uses both cores of this machine when it is idle; "
                         "at the lowest priority the foreground still comes first)")
    ap.add_argument("--rebuild", action="store_true",
                    help=f"build the structure set anew instead of loading the frozen DIR/{SET_FILE}")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "converge":
        run_convergence(args.out)
        return 0
    if args.command == "status":
        path = args.out / "progress.md"
        print(path.read_text() if path.is_file() else f"no progress in {args.out} yet")
        return 0

    from alloyflow.engine import ResultStore

    if args.command == "run":
        lower_session_priority()
    config = CampaignConfig(max_atoms=args.max_atoms)
    dft_kwargs = dft_kwargs_from(args)
    store = ResultStore(args.out)
    if args.command != "export":
        store.lock()  # one campaign per folder; export only reads
    try:
        if args.command == "export" and not (args.out / SET_FILE).is_file():
            raise SystemExit(f"no structure set in {args.out}: run 'plan' or 'run' first")
        own = args.out.resolve() == DEFAULT_OUT.resolve() and config == CampaignConfig() and args.dft == "gpaw"
        items, notes = structure_set(store, args.out, config, rebuild=args.rebuild, dest=args.dest if own else None,
                                     repo_set=REPO_SET if own else None)
        if args.command != "export":  # export only reads the store (it keeps exported labels the store lacks)
            seed_from_exported(store, args.out, items, read_exported(args.dest), args.dft, dft_kwargs)
        m = manifest(items, notes, config, args.dft, dft_kwargs)
        (args.out / "manifest.json").write_text(json.dumps(m, indent=1, default=str))
        log(f"{len(items)} structures: {m['counts']['train']} train, {m['counts']['validation']} validation "
            f"(groups {', '.join(m['validation_groups'])}); {len(notes['dropped_duplicates'])} duplicates dropped")
        if args.command == "plan":
            for k, it in enumerate(items):
                print(f"{k:4d} {it.split:10s} {len(it.structure):3d} atoms  cost {cost_model(it.structure, args.kpt_density, args.ecut):9.2e}  "
                      f"{it.label}")
            return 0
        if args.command == "export":
            meta = export_labels(store, items, args.dest, args.dft, dft_kwargs,
                                 notes={"left_out_phases": notes["left_out_phases"],
                                        "dropped_duplicates": notes.get("dropped_duplicates", [])}, out=args.out)
            log(f"exported {meta['counts']} labels to {args.dest}: {', '.join(meta['files'])}")
            return 0
        result = label_campaign(store, args.out, items, args.dft, dft_kwargs, args.max_labels, args.hours,
                                args.retry_failed, workers=args.workers)
        p = result["progress"]
        log(f"done for now: {result['computed']} computed, {result['reused']} reused, {result['failed']} failed; "
            f"{p['labels_done']}/{p['labels_total']} labels in the store")
    finally:
        store.unlock()
    return 0


if __name__ == "__main__":
    sys.exit(main())
