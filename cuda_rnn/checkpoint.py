"""Training checkpoints: one ``.npz`` file, written atomically.

A checkpoint holds the model parameters, the optimizer state, the training history and a JSON
``meta`` record (step, the state of every random generator, the run configuration). It is
written to a temporary file in the target's folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows), so a run killed at any moment leaves
either the previous complete checkpoint or the new complete one, never a torn file.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_SECTIONS = ("param", "optim", "history")


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly.

    params : model parameter name -> host array.
    optimizer : optimizer state (see :meth:`cuda_rnn.optim.Optimizer.state_dict`).
    history : per-step records, name -> 1-D array (e.g. "loss", "grad_norm", "lr").
    meta : JSON-serialisable: "step", "rng" (bit_generator.state of the data generator),
        "layer_rng" (the model's dropout generator state), "config" (how the run was made).
    """

    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    history: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for section, entries in zip(_SECTIONS,
                                (checkpoint.params, checkpoint.optimizer, checkpoint.history)):
        for name, value in entries.items():
            arrays[f"{section}/{name}"] = np.asarray(value)
    arrays["meta"] = np.array(json.dumps(checkpoint.meta))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    ValueError
        If the file is missing or is not a cuda_rnn checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: expected an existing .npz file, got {str(path)!r}")
    sections: dict[str, dict[str, np.ndarray]] = {s: {} for s in _SECTIONS}
    with np.load(path, allow_pickle=False) as data:
        if "meta" not in data.files:
            raise ValueError(f"checkpoint: expected a cuda_rnn checkpoint with a 'meta' record, "
                             f"got {str(path)!r} with keys {sorted(data.files)[:5]}")
        meta = json.loads(str(data["meta"]))
        for key in data.files:
            section, _, name = key.partition("/")
            if section in sections:
                sections[section][name] = data[key]
    return Checkpoint(sections["param"], sections["optim"], sections["history"], meta)
