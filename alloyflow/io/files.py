"""One way to write a result file: atomically, with one file mode.

Every file goes to a temporary name in its folder and is moved into place
with ``os.replace``: a run killed mid-write leaves the previous file or none,
never a truncated ``hull.json`` that a later step would trust. Results are
meant to be shared: every file is ``FILE_MODE`` (0644), whatever the umask
of ``mkstemp`` (0600).

A rerun rewrites nothing that would come out the same: a text file whose
content is already there is left alone, and a figure is drawn again only if
what it shows changed (``save_figure_once``: a hash of its data, kept in
``FIGURE_INDEX`` beside it with the file's size and modification time, so
a figure edited or replaced by hand is drawn again too). On the finished
default study a rerun wrote 190 files and drew 39 figures, 10 of its 24 s
of wall time. The index is plain JSON, only ever compared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

FILE_MODE = 0o644

FIGURE_INDEX = ".alloyflow-figures.json"
"""Per folder: figure file name -> hash of the data it shows, its size and modification time."""


class OutputFileError(ValueError):
    """A result file that cannot be read back; the message names the file."""


def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)``, then move the finished file onto ``path`` (mode ``FILE_MODE``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*"):  # left by a run killed mid-write (one run per folder: the lock)
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def write_text_atomic(path, text: str) -> Path:
    """``text`` into ``path`` (UTF-8, fsynced before the rename); a file that already holds it is left alone."""
    if _holds(Path(path), text.encode("utf-8")):
        return Path(path)

    def write(tmp: Path):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def write_json_atomic(path, model) -> Path:
    """A pydantic model as JSON; the model's own field names are the keys (``model_dump(mode='json')``)."""
    return write_text_atomic(path, json.dumps(model.model_dump(mode="json"), indent=2) + "\n")


@functools.lru_cache(maxsize=1)
def _drawing_versions() -> tuple[str, str]:
    from importlib.metadata import version

    return version("alloyflow"), version("matplotlib")


def figure_key(*data) -> str:
    """A hash of what a figure shows (JSON-able parts; anything else by its ``str``), and of the code drawing it."""
    text = json.dumps([*_drawing_versions(), *data], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _figure_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / FIGURE_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def save_figure_once(path, key: str, draw: Callable[[Path], object]) -> Path:
    """``draw(tmp_path)`` into ``path`` unless ``path`` is the figure of ``key`` this function wrote last.

    ``key``: ``figure_key`` of the data the figure shows. ``draw`` writes the
    image file (e.g. ``lambda tmp: plot_hull(result, path=tmp)``); it is not
    called when the file is still the one drawn for ``key``.
    """
    path = Path(path)
    index = _figure_index(path.parent)
    entry = index.get(path.name)
    try:
        if isinstance(entry, dict) and entry.get("key") == key and entry == {"key": key, **_stamp(path)}:
            return path
    except OSError:  # no such file
        pass
    atomic_write(path, draw)
    index[path.name] = {"key": key, **_stamp(path)}
    write_text_atomic(path.parent / FIGURE_INDEX, json.dumps(index, indent=0, sort_keys=True) + "\n")
    return path
