"""Potentials the user brings: fine-tuned SevenNet checkpoints as registry entries, and which ones are trusted.

An output folder is data, not configuration. A checkpoint is a pickle, and
sevenn's loader (0.13) unpickles it with ``torch.load(weights_only=False)``,
which runs whatever code the file carries. So a checkpoint becomes a
``--calculator`` choice only

* when this installation made it: ``alloyflow.ml.finetune.finetune_sevennet``
  records name, path and the sha256 it computed in a per-user file
  (``trusted_registry_path``: ``$XDG_CONFIG_HOME/alloyflow/potentials.json``,
  by default ``~/.config/alloyflow/potentials.json``), which the command line
  reads at start-up (``register_trusted_potentials``); nothing under ``--out``
  is read for this; or
* when the user names the file (``--potential PATH``, ``register_potential_file``).

Either way the file is checked against that digest and loaded with
``torch.load(weights_only=True)`` (``alloyflow.calculators.mlip.sevennet_from_checkpoint``),
so even a trusted file replaced later cannot run code; and no user potential
may take a built-in name (``sevennet``, ``sevennet-mf0``, ``gpaw``, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from alloyflow.calculators.mlip import sevennet_elements, sevennet_from_checkpoint
from alloyflow.calculators.registry import (
    CalculatorError,
    CalculatorSpec,
    forget_cached,
    is_builtin,
    register_calculator,
)


_FILES: dict[str, tuple[str, str]] = {}
"""Checkpoint path and digest of every potential registered in this process, by name (``registered_files``)."""


def registered_files() -> list[tuple[str, str, str]]:
    """(name, checkpoint, sha256) of the user potentials registered in this process, to register them again
    in a worker process (``alloyflow.engine.parallel``) without trusting anything new."""
    return [(name, path, digest) for name, (path, digest) in sorted(_FILES.items())]


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def trusted_registry_path() -> Path:
    """The per-user record of the potentials this installation fine-tuned.

    ``$XDG_CONFIG_HOME/alloyflow/potentials.json`` (an absolute
    ``XDG_CONFIG_HOME`` only), else ``~/.config/alloyflow/potentials.json``.
    """
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "alloyflow" / "potentials.json"


def trusted_potentials() -> list[dict]:
    """Every record (``name``, ``checkpoint``, ``sha256``, ``created``), oldest first; none if unreadable."""
    path = trusted_registry_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    records = data.get("potentials", []) if isinstance(data, dict) else []
    return [r for r in records if isinstance(r, dict) and all(isinstance(r.get(k), str) for k in
                                                                ("name", "checkpoint", "sha256"))]


def trusted_record(checkpoint) -> dict | None:
    """The trusted record of ``checkpoint`` (its resolved path), or None."""
    path = str(Path(checkpoint).resolve())
    found = [r for r in trusted_potentials() if r["checkpoint"] == path]
    return found[-1] if found else None


def trust_potential(name: str, checkpoint, sha256: str) -> Path:
    """Record ``checkpoint`` (with the ``sha256`` just computed from it) as a potential this installation made.

    One record per checkpoint path (a retrained one replaces its record); the
    file is written atomically, readable by its owner only.
    """
    path = trusted_registry_path()
    ckpt = str(Path(checkpoint).resolve())
    records = [r for r in trusted_potentials() if r["checkpoint"] != ckpt]
    records.append({"name": name, "checkpoint": ckpt, "sha256": sha256,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".potentials-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "potentials": records}, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def register_trusted_potentials(prefer_dir=None) -> list[str]:
    """Register the potentials of the per-user trusted record as calculator choices (no model is loaded).

    When two records share a name (the same phase fine-tuned in two studies),
    the one whose checkpoint lies under ``prefer_dir`` (the command's
    ``--out``) wins, else the newest. Nothing under ``prefer_dir`` is read.
    """
    prefer = Path(prefer_dir).resolve() if prefer_dir else None
    chosen: dict[str, tuple[tuple, dict]] = {}
    for i, record in enumerate(trusted_potentials()):
        under = prefer is not None and Path(record["checkpoint"]).is_relative_to(prefer)
        rank = (under, i)
        if record["name"] not in chosen or rank > chosen[record["name"]][0]:
            chosen[record["name"]] = (rank, record)
    names = []
    for name, (_, record) in sorted(chosen.items()):
        try:
            register_finetuned(name, record["checkpoint"], record["sha256"], verify=False)
        except CalculatorError:
            continue  # a moved checkpoint (or a record naming a built-in): the others stay usable
        names.append(name)
    return names


def potential_name(checkpoint) -> str:
    """The calculator name of a checkpoint file: its folder's name for ``checkpoint.pth``, else its stem."""
    path = Path(checkpoint)
    return path.parent.name if path.name == "checkpoint.pth" and path.parent.name else path.stem


def register_potential_file(checkpoint) -> str:
    """Register a checkpoint the user names explicitly (``--potential PATH``) and return its calculator name.

    The user vouches for the file; it is still loaded with
    ``torch.load(weights_only=True)`` and checked now, so a foreign or hostile
    file is a one-line error before any job. The name (``potential_name``)
    must not be a built-in calculator's.
    """
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise CalculatorError(f"--potential {checkpoint}: no such file")
    name = potential_name(path)
    if is_builtin(name):
        raise CalculatorError(f"--potential {checkpoint}: its name {name!r} is a built-in calculator's; rename the "
                              "file (or its folder, for checkpoint.pth)")
    register_finetuned(name, path)
    return name


def register_finetuned(name: str, checkpoint, sha256: str | None = None, verify: bool = True) -> CalculatorSpec:
    """Register ``checkpoint`` as calculator ``name``; a file that does not load raises ``CalculatorError``.

    ``sha256`` must come from a trusted place (the digest ``finetune_sevennet``
    computed, or the per-user record), never from the checkpoint's folder;
    without it the file's own digest is taken (the caller vouches for the
    file, e.g. ``--potential PATH``). The model string carries the digest
    (first 12 digits), which enters every cache key. ``verify=False`` neither
    hashes nor loads the checkpoint now (start-up registration); a changed or
    bad file then fails on first use, with the same errors. Every load checks
    the digest and uses ``torch.load(weights_only=True)``; a built-in name is refused.
    """
    path = Path(checkpoint).resolve()
    if is_builtin(name):
        raise CalculatorError(f"{name!r} is a built-in calculator; choose another name for a fine-tuned potential")
    if not path.is_file():
        raise CalculatorError(f"fine-tuned potential {name!r}: checkpoint {path} not found")
    digest = sha256 or sha256_of(path)

    def factory(device: str = "cpu"):
        try:
            return sevennet_from_checkpoint(path, digest, device=device)
        except CalculatorError as exc:  # a changed, truncated, foreign or hostile file: say so, load nothing
            raise CalculatorError(f"fine-tuned potential {name!r}: {exc}; the default potential is "
                                  "unaffected") from None

    if verify:
        factory()

    spec = CalculatorSpec(
        name=name,
        model=f"SevenNet-0 fine-tuned {name} ({digest[:12]})",
        kind="mlip",
        package="sevenn",
        description=f"SevenNet-0 fine-tuned on DFT labels; checkpoint {path}",
        factory=factory,
        supported_elements=sevennet_elements,
    )
    register_calculator(spec, user=True)
    _FILES[name] = (str(path), digest)
    # A model cached under this name would be the previous checkpoint's: drop it.
    forget_cached(name)
    return spec
