"""What every command returns, and the library it reads structures from."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path

from alloyflow.engine import ResultStore, RunSummary, deterministic_uuid
from alloyflow.io.layout import OutputLayout
from alloyflow.structures import StructureLibrary
from alloyflow.workflows.jobs.relax import RelaxationDocument
from alloyflow.workflows.schemas.study import HullDocument


@dataclass
class CommandResult:
    text: str
    files: dict = field(default_factory=dict)
    summary: RunSummary = field(default_factory=RunSummary)
    data: object = None


def library_for(structure_dirs, systems=None) -> StructureLibrary:
    """The bundled library plus ``structure_dirs``; with ``systems``, a stderr warning per user file that
    belongs to none of them (read, then ignored)."""
    library = StructureLibrary(user_dirs=structure_dirs or ())
    if systems:
        library.warn_outside(systems)
    return library


def add_predicted(library: StructureLibrary, out: Path, system: str) -> None:
    """Structures found by ``alloyflow search`` in ``<out>/<system>/predicted`` join the library (once)."""
    predicted = OutputLayout(out).predicted(system)
    if predicted.is_dir() and any(predicted.glob("*.cif")) and not any(
        p.path.parent == predicted for p in library.all()
    ):
        library.add_folder(predicted)


def relaxation_documents(store: ResultStore, hull: HullDocument) -> list[RelaxationDocument]:
    """The relaxation documents a hull document was built from (by their cache keys)."""
    return [store.document(deterministic_uuid(k), RelaxationDocument) for k in hull.relaxation_keys]
