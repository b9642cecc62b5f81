"""Reading VASP results: atomate2's task documents, the NEB folders' OUTCAR headers, VTST's NEB forces.

Pure functions over what atomate2 stored (objects, or dicts when read back
raw), used by the converting jobs of ``alloyflow.workflows.jobs.vasp`` and
``vasp_refine``; ``keyed_step`` gives their jobs uuids derived from one key.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from jobflow import Job
from pymatgen.core import Structure

from alloyflow.engine import deterministic_uuid, input_hash
from alloyflow.engine.keys import EARLIER_KEY

def keyed_step(j: Job, key: str, step: str, name: str, earlier: str | None = None) -> Job:
    """Name a job and give it a uuid derived from ``key`` and ``step`` (before its output is used).

    ``earlier``: the sub-flow's key before the face wrap (``alloyflow.engine.keys.earlier_key``), where it differs.
    """
    j.name = name
    full_key = input_hash(key, step) if step else key
    j.set_uuid(deterministic_uuid(full_key))
    j.metadata = {**(j.metadata or {}), "alloyflow_key": full_key, "alloyflow_label": name}
    if earlier and earlier != key:
        j.metadata[EARLIER_KEY] = input_hash(earlier, step) if step else earlier
    return j


def task_get(obj, *path, default=None):
    """Attribute-or-key access into task documents (objects, or dicts when read back raw)."""
    for p in path:
        if obj is None:
            return default
        obj = obj.get(p) if isinstance(obj, dict) else getattr(obj, p, None)
    return default if obj is None else obj


def as_structure(obj) -> Structure:
    return obj if isinstance(obj, Structure) else Structure.from_dict(obj)


def task_succeeded(task) -> bool:
    return str(getattr(task_get(task, "state"), "value", task_get(task, "state"))) == "successful"


def ionic_steps(task) -> list:
    calcs = task_get(task, "calcs_reversed", default=[]) or task_get(task, "calculations", default=[])
    return list(task_get(calcs[0], "output", "ionic_steps", default=[])) if calcs else []


def max_force(forces) -> float:
    f = np.asarray(forces if forces is not None else [], dtype=float).reshape(-1, 3)
    return float(np.linalg.norm(f, axis=1).max()) if len(f) else 0.0


def _seconds(stats) -> float:
    return float(task_get(stats, "elapsed_time", default=0.0) or 0.0)


def task_elapsed(task) -> float:
    """VASP's elapsed (wall) seconds of a task document, each run counted once.

    emmet's ``run_stats`` holds one entry per calculation and an "overall"
    entry that is their sum: the per-calculation entries are added, "overall"
    is used only when it is the only one. Without ``run_stats`` (a NEB's
    image documents) the calculations' own ``output.run_stats`` are added.
    """
    stats = task_get(task, "run_stats", default={}) or {}
    runs = [v for k, v in stats.items() if k != "overall"]
    if runs:
        return float(sum(_seconds(v) for v in runs))
    if "overall" in stats:
        return _seconds(stats["overall"])
    calcs = task_get(task, "calcs_reversed", default=[]) or task_get(task, "calculations", default=[]) or []
    return float(sum(_seconds(task_get(c, "output", "run_stats")) for c in calcs))


def neb_elapsed(neb) -> tuple[float, list[float]]:
    """Wall seconds of a VASP NEB run and each image's "Elapsed time" (the images run side by side: the longest)."""
    per_image = [_seconds(task_get(c, "output", "run_stats")) for c in (task_get(neb, "calculations", default=[]) or [])]
    return (max(per_image) if per_image else 0.0), per_image


def software_versions() -> dict:
    """Versions of the packages that ran and read the VASP jobs (this environment; the modules' own
    ``__version__``: pymatgen's distribution and its ``pymatgen.core`` can differ)."""
    from importlib import import_module

    out = {}
    for name, module in (("atomate2", "atomate2"), ("pymatgen", "pymatgen.core"), ("emmet-core", "emmet.core"),
                         ("custodian", "custodian"), ("jobflow", "jobflow")):
        try:
            out[name] = getattr(import_module(module), "__version__", None) or version(name)
        except (ImportError, PackageNotFoundError):
            out[name] = None
    return out


def incar_of(calc) -> dict:
    return dict(task_get(calc, "input", "incar", default={}) or {})


def _nsw(calc) -> int | None:
    nsw = task_get(calc, "input", "parameters", "NSW", default=None)
    nsw = incar_of(calc).get("NSW") if nsw is None else nsw
    return int(nsw) if nsw is not None else None


def run_problem(task) -> str | None:
    """Why a VASP task document is not a converged result (None if it is)."""
    if task is None:
        return "no VASP task document"
    if task_succeeded(task):
        return None
    calcs = task_get(task, "calcs_reversed", default=[]) or task_get(task, "calculations", default=[]) or []
    for calc in calcs[:1] if task_get(task, "calcs_reversed") else calcs:
        steps = task_get(calc, "output", "ionic_steps", default=[]) or []
        nsw = _nsw(calc)
        if nsw is not None and nsw > 1 and len(steps) >= nsw:
            return f"the ionic steps reached NSW = {nsw} before EDIFFG was met (last structure and energy kept)"
    state = task_get(task, "state")
    return f"VASP run not successful (atomate2 state {getattr(state, 'value', state)!r}; electronic convergence?)"


def vasp_summary(task) -> dict:
    calc = (task_get(task, "calcs_reversed", default=[None]) or [None])[0]
    incar = incar_of(calc)
    return {
        "dir_name": task_get(task, "dir_name"),
        "vasp_version": task_get(calc, "vasp_version"),
        "incar": {k: incar[k] for k in ("GGA", "ENCUT", "ISMEAR", "SIGMA", "ISIF", "EDIFFG", "IBRION", "NSW")
                  if k in incar},
        "potcar": [task_get(p, "titel") for p in (task_get(calc, "input", "potcar_spec", default=[]) or [])],
        "versions": software_versions(),
    }


def incar_overrides(maker, defaults: dict) -> dict:
    """The INCAR settings of an atomate2 maker that differ from alloyflow's ``defaults`` (``--incar``)."""
    missing = object()
    return {k: v for k, v in sorted(maker.input_set_generator.user_incar_settings.items())
            if defaults.get(k, missing) != v}


def _mic(d: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Cartesian displacements ``d`` (n x 3) under the minimum-image convention of ``lattice`` (rows = vectors)."""
    frac = d @ np.linalg.inv(lattice)
    return (frac - np.round(frac)) @ lattice


def neb_forces(positions: list, energies: list[float], forces: list, lattice, spring: float = 5.0,
               climb: bool = True) -> list[np.ndarray]:
    """The NEB forces on the intermediate images, as VTST computes them from the DFT forces.

    Improved tangent (Henkelman and Jónsson, J. Chem. Phys. 113, 9978
    (2000)): towards the higher neighbour, or at an extremum the energy-
    weighted sum of both segments; normal component of the DFT force plus
    the spring force ``spring·(|R+| - |R-|)`` along the tangent; with
    ``climb`` the highest image feels no spring and its force along the
    tangent is inverted. On the converged Si63 vacancy band of atomate2's
    test data this reproduces VTST's "FORCES: max atom" of each image to
    1e-6 eV/Å.

    Parameters
    ----------
    positions : list of (n_atoms, 3) arrays
        Cartesian positions of the whole band, endpoints included (n_images + 2).
    energies : list of float
        Energies of the whole band (VTST uses VASP's free energy, TOTEN).
    forces : list of (n_atoms, 3) arrays
        DFT forces on the intermediate images.
    lattice : (3, 3) array
        The (fixed) cell, rows are lattice vectors.
    spring : float
        Spring constant, eV/Å² (VASP's ``SPRING`` without its sign; default -5).
    climb : bool
        Whether the highest intermediate image climbs.
    """
    lattice = np.asarray(lattice, dtype=float)
    pos = [np.asarray(p, dtype=float).reshape(-1, 3) for p in positions]
    e = [float(x) for x in energies]
    top = 1 + int(np.argmax(e[1:-1])) if climb and len(e) > 2 else None
    out = []
    for i in range(1, len(pos) - 1):
        plus, minus = _mic(pos[i + 1] - pos[i], lattice), _mic(pos[i] - pos[i - 1], lattice)
        if e[i + 1] > e[i] > e[i - 1]:
            tangent = plus
        elif e[i + 1] < e[i] < e[i - 1]:
            tangent = minus
        else:
            d_max = max(abs(e[i + 1] - e[i]), abs(e[i - 1] - e[i]))
            d_min = min(abs(e[i + 1] - e[i]), abs(e[i - 1] - e[i]))
            tangent = plus * d_max + minus * d_min if e[i + 1] > e[i - 1] else plus * d_min + minus * d_max
        norm = np.linalg.norm(tangent)
        tangent = tangent / norm if norm > 0 else tangent
        f = np.asarray(forces[i - 1], dtype=float).reshape(-1, 3)
        parallel = float((f * tangent).sum())
        if i == top:
            out.append(f - 2.0 * parallel * tangent)
        else:
            out.append(f - parallel * tangent
                       + spring * (np.linalg.norm(plus) - np.linalg.norm(minus)) * tangent)
    return out


VTST_TAGS = ("LCLIMB", "IOPT", "ICHAIN")
"""INCAR tags that only a VTST-patched VASP reads (stock VASP ignores them)."""


def _local_path(dir_name) -> Path | None:
    """A task document's ``dir_name`` (possibly ``host:/path``) as a readable local folder, or None."""
    if not dir_name:
        return None
    for candidate in (str(dir_name), str(dir_name).split(":", 1)[-1]):
        if Path(candidate).is_dir():
            return Path(candidate)
    return None


def _find(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, gzipped (atomate2 gzips its job folders once VASP is done) or not."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def outcar_header(path: Path) -> dict:
    """What an NEB image's OUTCAR says before its first SCF step: VTST's banner and NEB settings.

    VTST prints ``VTST: version ...`` and ``NEB: LCLIMB``/``NEB: SPRING``
    lines there; a stock VASP prints none (and ignores LCLIMB, IOPT, ICHAIN).
    """
    from monty.io import zopen

    info = {"vtst": None, "lclimb": None, "spring": None}
    with zopen(path, "rt") as f:
        for line in f:
            text = line.strip()
            if text.startswith("----") and "Iteration" in text:
                break
            if text.startswith("VTST: version"):
                info["vtst"] = text.split("version", 1)[1].strip(" ,")
            elif text.startswith("NEB:") and text.split()[1:2] == ["LCLIMB"]:
                info["lclimb"] = text.split()[-1].upper().startswith("T")
            elif text.startswith("NEB:") and text.split()[1:2] == ["SPRING"]:
                info["spring"] = float(text.split()[-1])
    return info


def neb_outcar_headers(neb, n_images: int) -> list[dict]:
    """Each image's OUTCAR header (``outcar_header``), read from the NEB folder as atomate2's
    ``collect_neb_output`` reads it; empty when the folder is not readable here."""
    folder = _local_path(task_get(neb, "dir_name"))
    if folder is None:
        return []
    outcars = [_find(folder / f"{k:02d}", "OUTCAR") for k in range(1, n_images + 1)]
    return [outcar_header(p) for p in outcars if p is not None]


def aligned(structure: Structure, reference: Structure) -> tuple[Structure, bool]:
    """``structure`` with its sites renumbered to match ``reference`` (same species, shortest periodic
    distances), and whether anything changed. alloyflow's own bands keep one order (``sort_tol=0``);
    this guards bands whose endpoints were renumbered between relaxation and NEB (atomate2 sorts them)."""
    from scipy.optimize import linear_sum_assignment

    d = reference.lattice.get_all_distances(reference.frac_coords, structure.frac_coords)
    if np.allclose(np.diag(d), d.min(axis=1)):
        return structure, False
    species = np.array([str(s.specie) for s in reference])
    other = np.array([str(s.specie) for s in structure])
    d = d + 1e6 * (species[:, None] != other[None, :])
    _, cols = linear_sum_assignment(d)
    if np.array_equal(cols, np.arange(len(cols))):
        return structure, False
    return Structure.from_sites([structure[int(j)] for j in cols]), True


def last_step(calc):
    steps = task_get(calc, "output", "ionic_steps", default=[]) or []
    return steps[-1] if steps else None


def free_energy(task_or_calc) -> float:
    """VASP's free energy (TOTEN) of the last ionic step, what VTST compares; the task energy otherwise."""
    step = last_step(task_or_calc)
    if step is None:
        calcs = task_get(task_or_calc, "calcs_reversed", default=[]) or []
        step = last_step(calcs[0]) if calcs else None
    value = task_get(step, "e_fr_energy")
    return float(value if value is not None else task_get(task_or_calc, "output", "energy"))


def vtst_problem(incar: dict, headers: list[dict]) -> str | None:
    """A clear message when the INCAR asks for VTST but the VASP that ran has none (None otherwise)."""
    asked = [t for t in VTST_TAGS if t in incar and incar[t] not in (False, 0, "F", ".FALSE.")]
    if not asked or not headers or any(h.get("vtst") for h in headers):
        return None
    return (f"the NEB INCAR sets VTST tags ({', '.join(asked)}) but the VASP that ran has no VTST (no 'VTST: "
            "version' line in the images' OUTCAR): stock VASP ignores them"
            + (", and with IBRION = 3, POTIM = 0 its images never move" if incar.get("IBRION") == 3 else "")
            + ". Use a VTST-patched VASP, or the plain VASP NEB: makers_for('vasp', climb=False) "
            "(alloyflow submit ... --no-climb)")
