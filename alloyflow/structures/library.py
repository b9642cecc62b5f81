"""The structure library: bundled CIFs with provenance, plus user folders.

Each bundled CIF opens with a ``# SOURCE:`` / ``# STATUS:`` header (see
``data/SOURCES.md``). The header is kept verbatim and summarised in a
``status`` word so that a user can filter, e.g. drop hypothetical cells::

    lib = StructureLibrary()
    [p.name for p in lib.phases("Li-Sn") if p.status != "hypothetical"]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

from pymatgen.core import Composition, Element, Structure

DATA_DIR = Path(__file__).parent / "data"
STATUSES = ("element", "verified", "prototype", "model", "hypothetical", "predicted", "user")

OVERLAP_FRACTION = 0.5
"""Two atoms closer than this fraction of the sum of their covalent radii overlap: the file is refused.

Real Li-alloy contacts stay above ~0.75 of the covalent sum (Li-Li 2.5 Å vs
2.56 Å in the densest phases); 0.5 only catches doubled sites, wrong cell
settings and unit mix-ups, which a relaxation would otherwise blow apart.
"""


class StructureError(ValueError):
    """A structure file or request that cannot be used; the message names it."""


def parse_system(system: str | Iterable[str]) -> tuple[str, ...]:
    """``"Li-Sn"`` -> ``("Li", "Sn")``, with a clear error for unknown elements."""
    parts = system.replace(" ", "").split("-") if isinstance(system, str) else list(system)
    parts = [p for p in parts if p]
    if len(parts) < 2:
        raise StructureError(f"chemical system {system!r} must name at least two elements, e.g. 'Li-Sn'")
    for p in parts:
        if not Element.is_valid_symbol(p):
            raise StructureError(f"unknown element {p!r} in chemical system {system!r}")
    return tuple(sorted(set(parts), key=lambda s: (s != "Li", s)))


def treated_elements(systems: Iterable[str] = (), phases: Iterable[str] = ()) -> set[str] | None:
    """The elements a command treats: those of its chemical systems (``parse_system``, whose errors it
    raises), else of its phases' formulas (``Li2Sn5``, ``LiSn_beta``); None where a phase name is no formula."""
    systems, phases = [s for s in systems if s], [p for p in phases if p]
    if systems:
        return {el for system in systems for el in parse_system(system)}
    try:
        return {el.symbol for phase in phases for el in Composition(phase.split("_")[0]).elements} or None
    except (ValueError, KeyError, AttributeError):
        return None


def _status_from_header(header: str, n_elements: int, user: bool) -> str:
    status_lines = [ln for ln in header.splitlines() if ln.startswith("# STATUS")]
    text = status_lines[0].upper() if status_lines else ""
    if n_elements == 1:
        return "element"
    if "PREDICTED" in text:
        return "predicted"
    if "HYPOTHETICAL" in text:
        return "hypothetical"
    if "IDEALISED" in text or "IDEALIZED" in text or "MODEL" in text:
        return "model"
    if "PROTOTYPE" in text:
        return "prototype"
    if "VERIFIED" in text:
        return "verified"
    return "user" if user else "verified"


def _read_header(path: Path) -> str:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            lines.append(line.rstrip("\n"))
    return "\n".join(lines)


def read_structure(path: str | Path) -> Structure:
    """Read a CIF (or any pymatgen-readable file) with an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise StructureError(f"structure file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for bad CIFs
        raise StructureError(f"cannot read structure file {path}: {type(exc).__name__}: {exc}") from None
    if len(structure) == 0:
        raise StructureError(f"structure file {path} holds no atoms")
    if not structure.is_ordered:
        k, site = next((k, site) for k, site in enumerate(structure) if not site.is_ordered)
        raise StructureError(
            f"structure file {path} is partially occupied (site {k}: {site.species.formula}, "
            f"{len([s for s in structure if not s.is_ordered])} such sites); alloyflow needs an ordered cell: "
            "order it first, e.g. with pymatgen's OrderDisorderedStructureTransformation "
            "(or enumlib/sqsgenerator), and add the ordered CIF"
        )
    check_overlaps(structure, where=f"structure file {path}")
    return structure


def check_overlaps(structure: Structure, fraction: float = OVERLAP_FRACTION, where: str = "structure") -> None:
    """Refuse atoms closer than ``fraction`` of the sum of their covalent radii (periodic images included)."""
    import numpy as np
    from ase.data import covalent_radii

    radii = np.array([covalent_radii[site.specie.Z] for site in structure])
    dist = np.array(structure.distance_matrix, dtype=float)
    np.fill_diagonal(dist, np.inf)
    limit = fraction * (radii[:, None] + radii[None, :])
    ratio = dist / limit
    i, j = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
    if ratio[i, j] < 1:
        def at(n: int) -> str:
            return f"{n} ({structure[n].species_string} at {' '.join(f'{x:.3f}' for x in structure[n].frac_coords)})"

        raise StructureError(
            f"{where}: sites {at(i)} and {at(j)} are "
            f"{dist[i, j]:.2f} Å apart, less than {fraction:g} x their covalent radii sum ({limit[i, j]:.2f} Å): "
            "overlapping atoms (a doubled site or a wrong cell?)"
        )
    shortest = min(structure.lattice.get_niggli_reduced_lattice().abc)  # an atom and its own image
    k = int(np.argmax(radii))
    if shortest < fraction * 2 * radii[k]:
        raise StructureError(
            f"{where}: site {k} ({structure[k].species_string}) is {shortest:.2f} Å from its own periodic image, "
            f"less than {fraction:g} x twice its covalent radius ({fraction * 2 * radii[k]:.2f} Å): "
            "the cell is too small"
        )


class StructureFacts:
    """Composition, reduced formula and elements of anything with a ``structure``."""

    @property
    def composition(self) -> Composition:
        return self.structure.composition

    @property
    def formula(self) -> str:
        return self.composition.reduced_formula

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(sorted(el.symbol for el in self.composition.elements))


@dataclass
class Phase(StructureFacts):
    """One structure of the library with its provenance."""

    name: str
    path: Path
    header: str = ""
    user: bool = False
    status_override: str | None = None
    metadata: dict = field(default_factory=dict)

    @cached_property
    def structure(self) -> Structure:
        return read_structure(self.path)

    @property
    def status(self) -> str:
        if self.status_override:
            return self.status_override
        return _status_from_header(self.header, len(self.elements), self.user)

    @property
    def source(self) -> str:
        for line in self.header.splitlines():
            if line.startswith("# SOURCE:"):
                return line.removeprefix("# SOURCE:").strip()
        return f"user file {self.path}" if self.user else str(self.path.name)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "formula": self.formula,
            "status": self.status,
            "source": self.source,
            "file": str(self.path),
            "natoms": len(self.structure),
            **self.metadata,
        }


class StructureLibrary:
    """Bundled phases plus any user CIF folders; later folders override by name."""

    def __init__(self, user_dirs: Iterable[str | Path] = (), include_bundled: bool = True):
        self._phases: dict[str, Phase] = {}
        if include_bundled:
            for path in sorted(DATA_DIR.glob("*.cif")) + sorted((DATA_DIR / "hypothetical").glob("*.cif")):
                self._phases[path.stem] = Phase(path.stem, path, _read_header(path))
        for folder in user_dirs:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> list[Phase]:
        folder = Path(folder)
        if not folder.is_dir():
            raise StructureError(f"structure folder {folder} does not exist")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".cif", ".vasp") or p.name.startswith("POSCAR"))
        if not paths:
            raise StructureError(f"structure folder {folder} holds no CIF or POSCAR files")
        added = []
        for path in paths:
            phase = Phase(path.stem, path, _read_header(path), user=True)
            phase.structure  # noqa: B018 - fail now, naming the file, not later mid-run
            self._phases[phase.name] = phase
            added.append(phase)
        return added

    def add_structure(self, name: str, structure: Structure, status: str = "predicted", **metadata) -> Phase:
        """Register an in-memory structure (e.g. from a search) with provenance."""
        phase = Phase(name, Path(f"<{name}>"), user=True, status_override=status, metadata=metadata)
        phase.__dict__["structure"] = structure
        self._phases[name] = phase
        return phase

    def all(self) -> list[Phase]:
        return list(self._phases.values())

    def outside(self, systems: Iterable[str]) -> list[Phase]:
        """User files (``--structures``) whose elements lie in none of ``systems``: read, then not used."""
        allowed = [set(parse_system(s)) for s in systems]
        return [p for p in self._phases.values()
                if p.user and p.path.is_file() and not any(set(p.elements) <= a for a in allowed)]

    def warn_outside(self, systems: Iterable[str]) -> list[Phase]:
        """One stderr line per user file that belongs to none of ``systems`` (so is ignored); once per file."""
        import sys

        systems = list(systems)
        if not hasattr(self, "_warned_outside"):
            self._warned_outside: set[Path] = set()
        warned = self._warned_outside
        ignored = [p for p in self.outside(systems) if p.path not in warned]
        for p in ignored:
            warned.add(p.path)
            print(f"alloyflow: warning: {p.path} ({p.formula}) belongs to none of {', '.join(systems)}; ignored",
                  file=sys.stderr)
        return ignored

    def phases(self, system: str | Iterable[str], statuses: Iterable[str] | None = None) -> list[Phase]:
        """Every phase whose elements lie in ``system`` (elements included)."""
        elements = set(parse_system(system))
        wanted = set(statuses) if statuses else None
        found = [
            p
            for p in self._phases.values()
            if set(p.elements) <= elements and (wanted is None or p.status in wanted)
        ]
        if not found:
            raise StructureError(f"no structures for system {'-'.join(sorted(elements))} in the library")
        missing = elements - {p.elements[0] for p in found if len(p.elements) == 1}
        if missing:
            raise StructureError(
                f"system {'-'.join(sorted(elements))} lacks an elemental reference for {', '.join(sorted(missing))}"
            )
        return sorted(found, key=lambda p: (p.composition.get_atomic_fraction(Element(parse_system(system)[0])), p.name))

    def get(self, name_or_formula: str, system: str | None = None) -> Phase:
        """A phase by file name (``LiSn_beta``) or reduced formula (``Li13Sn5``)."""
        if name_or_formula in self._phases:
            phase = self._phases[name_or_formula]
        else:
            try:
                formula = Composition(name_or_formula).reduced_formula
            except Exception:
                raise StructureError(f"{name_or_formula!r} is neither a phase name nor a chemical formula") from None
            matches = [p for p in self._phases.values() if p.formula == formula]
            if not matches:
                raise StructureError(f"no phase {name_or_formula!r} in the library (known: {', '.join(sorted(self._phases))})")
            # Prefer the file named after the formula (the reported phase) over polymorph variants.
            matches.sort(key=lambda p: (p.name != formula, p.status == "hypothetical", p.name))
            phase = matches[0]
        if system is not None:
            allowed = set(parse_system(system))
            outside = sorted(set(phase.elements) - allowed)
            if outside:
                raise StructureError(
                    f"phase {phase.name} ({phase.path}) contains {', '.join(outside)}, outside the system {'-'.join(sorted(allowed))}"
                )
        return phase

    def load(self, name_or_formula: str, system: str | None = None) -> Structure:
        return self.get(name_or_formula, system).structure.copy()


def fetch_materials_project(system: str, folder: str | Path, api_key: str | None = None) -> list[Path]:
    """Write the system's Materials Project structures as CIFs into ``folder``.

    Needs the optional ``mp`` extra (``pip install alloyflow[mp]``), network
    access and an API key (argument or $MP_API_KEY).
    """
    import os

    api_key = api_key or os.environ.get("MP_API_KEY")
    if not api_key:
        raise StructureError("Materials Project fetch needs an API key: pass api_key or set MP_API_KEY")
    try:
        from mp_api.client import MPRester
    except ImportError:
        raise StructureError("Materials Project fetch needs the optional extra: pip install 'alloyflow[mp]'") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with MPRester(api_key) as mpr:
            docs = mpr.materials.summary.search(chemsys="-".join(parse_system(system)), fields=["material_id", "structure"])
    except Exception as exc:
        raise StructureError(f"Materials Project is unreachable or refused the request (offline?): {exc}") from None
    written = []
    for doc in docs:
        path = folder / f"{doc.structure.composition.reduced_formula}_{doc.material_id}.cif"
        header = f"# SOURCE: Materials Project {doc.material_id}\n# STATUS: database structure (MP, PBE-relaxed)\n"
        path.write_text(header + doc.structure.to(fmt="cif"))
        written.append(path)
    return written


def primitive(structure):
    """Relax the primitive cell: Li17Sn4's 420-atom conventional cell has 105 atoms."""
    prim = structure.get_primitive_structure(tolerance=0.01)
    return prim if len(prim) < len(structure) else structure.copy()


@dataclass
class PhaseRecord(StructureFacts):
    """A phase carried inside a workflow: its structure and provenance, no file path.

    A job that decides at run time which phases to compute (the study's
    barrier choice) runs on a worker that may not see the submitting
    machine's structure folders; it receives ``PhaseRecord``s instead of
    ``Phase``s. ``as_dict``/``from_dict`` make it JSON-serialisable.
    """

    name: str
    structure: Structure
    status: str = ""
    source: str = ""

    @classmethod
    def of(cls, phase: "Phase") -> "PhaseRecord":
        return cls(phase.name, phase.structure, phase.status, phase.source)

    def as_dict(self) -> dict:
        return {"@module": type(self).__module__, "@class": type(self).__name__, "name": self.name,
                "structure": self.structure.as_dict(), "status": self.status, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseRecord":
        structure = d["structure"]
        if isinstance(structure, dict):
            structure = Structure.from_dict(structure)
        return cls(d["name"], structure, d.get("status", ""), d.get("source", ""))
