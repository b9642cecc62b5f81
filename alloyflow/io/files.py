"""One way to write a result file: atomically, with one file mode.

Every file goes to a temporary name in its folder and is moved into place
with ``os.replace``: a run killed mid-write leaves the previous file or none,
never a truncated ``hull.json`` that a later step would trust. Results are
meant to be shared: every file is ``FILE_MODE`` (0644), whatever the umask
of ``mkstemp`` (0600).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

FILE_MODE = 0o644


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


def write_text_atomic(path, text: str) -> Path:
    """``text`` into ``path`` (UTF-8, fsynced before the rename)."""

    def write(tmp: Path):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def write_json_atomic(path, model) -> Path:
    """A pydantic model as JSON; the model's own field names are the keys (``model_dump(mode='json')``)."""
    return write_text_atomic(path, json.dumps(model.model_dump(mode="json"), indent=2) + "\n")


def save_figure(fig, path) -> Path:
    """A matplotlib figure as PNG, atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
