"""A training run's folder: what is in it, and the rules for starting, resuming and reading one.

``--out`` holds ``run.json`` (the cells and the settings) and per cell ``checkpoint.npz``,
``metrics.json`` and ``loss.png`` (in ``<cell>/`` when the run trains several cells). A run
there is never overwritten silently (:func:`claim`); a resumed run keeps the settings that
define its model and data and says which training settings changed
(:func:`take_run_settings`). Errors are ValueErrors that name the option at fault.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint, load_checkpoint
from .model import CELLS

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
RUN_FILE = "run.json"
RUN_FILES = (CHECKPOINT, METRICS, "loss.png")
#: Settings of a run that define its model and data: a resumed run keeps them.
FIXED_ON_RESUME = ("task", "text", "seq_len", "cell", "hidden", "layers", "embed", "dropout",
                   "dtype", "seed", "optimizer", "momentum", "proj_size", "peephole",
                   "no_forget_gate", "forget_bias", "layer_norm", "zoneout", "zoneout_cell",
                   "recurrent_dropout", "weight_dropout")
#: The train options that set the LSTM's variant (see :func:`cuda_rnn.cli.cell_options`).
LSTM_FLAGS = ("proj_size", "peephole", "no_forget_gate", "forget_bias", "layer_norm",
              "zoneout_cell")
#: The train options of the regularisers every cell takes.
REGULARISER_FLAGS = ("zoneout", "recurrent_dropout", "weight_dropout")
#: Settings of how training goes on: a resumed run may change them, and says so.
CHANGEABLE_ON_RESUME = ("steps", "batch", "lr", "clip", "clip_value", "tbptt", "schedule",
                        "warmup")


def flag(dest: str) -> str:
    """The command-line option of the setting ``dest``."""
    return f"--{dest.replace('_', '-')}"


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of ``args`` that ``run.json`` records, as JSON reads them back."""
    return {k: _plain(getattr(args, k)) for k in FIXED_ON_RESUME + CHANGEABLE_ON_RESUME}


def _describe(settings: dict[str, Any]) -> str:
    return " ".join(f"{flag(k)} {_show(settings[k])}" for k in FIXED_ON_RESUME
                    if settings[k] is not None and settings[k] is not False)


def take_run_settings(args: argparse.Namespace, given: set[str], out: Path) -> list[str]:
    """Set every setting not given on the command line to the run's in ``out``; refuse a given
    setting that would change the run's model or data. Returns the changed training settings,
    as "--flag new (the run has old)"."""
    path = out / RUN_FILE
    if not path.is_file():
        raise ValueError(f"--resume: expected a run in {str(out)!r} (its {RUN_FILE}), found "
                         "none; train without --resume to start one")
    # A run made before the LSTM flags existed used their defaults.
    settings = {**dict.fromkeys(LSTM_FLAGS + REGULARISER_FLAGS), "peephole": False,
                "no_forget_gate": False, "layer_norm": False,
                **json.loads(path.read_text(encoding="utf-8"))["settings"]}
    conflicts, changed = [], []
    for key in FIXED_ON_RESUME + CHANGEABLE_ON_RESUME:
        if key in given and _plain(getattr(args, key)) != settings[key]:
            note = f"{flag(key)} {_show(getattr(args, key))} (the run has {_show(settings[key])})"
            (conflicts if key in FIXED_ON_RESUME else changed).append(note)
        else:
            setattr(args, key, settings[key])
    if conflicts:
        raise ValueError(f"--resume: the run in {str(out)!r} was made with {_describe(settings)}; "
                         f"got {', '.join(conflicts)}: leave these out to continue it, or train "
                         "into another --out")
    if args.tbptt is not None:
        args.tbptt = tuple(args.tbptt)
    return changed


def _previous_run(out: Path) -> list[Path]:
    """The files of a run already in ``out``."""
    files = [out / RUN_FILE, out / "loss.png"]
    files += [folder / name for folder in [out] + [out / c for c in CELLS] for name in RUN_FILES]
    return [f for f in files if f.is_file()]


def claim(out: Path, force: bool) -> None:
    """Make ``out`` ready for a new run: refuse to overwrite a run there unless ``force``, which
    deletes that run's files (and nothing else)."""
    files = _previous_run(out)
    if files and not force:
        raise ValueError(f"--out: {str(out)!r} already holds a run ({files[0].name}); --resume "
                         "continues it, --force replaces it, or choose another --out")
    for f in files:
        f.unlink()
    for cell in CELLS:
        if (out / cell).is_dir() and not any((out / cell).iterdir()):
            (out / cell).rmdir()


def checkpoints(out: Path, cells: list[str], steps: int) -> dict[str, Checkpoint | None]:
    """Each cell's checkpoint in the run ``out`` (None where it has none yet); refuses a
    checkpoint past ``steps``."""
    found: dict[str, Checkpoint | None] = {}
    for cell in cells:
        path = cell_folder(out, cells, cell) / CHECKPOINT
        found[cell] = load_checkpoint(path) if path.is_file() else None
        step = found[cell].meta["step"] if found[cell] is not None else 0
        if step > steps:
            raise ValueError(f"--steps: expected at least {step}, the step of {str(path)!r}, "
                             f"got {steps}")
    return found


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` through a temporary file and a rename, so a run killed
    meanwhile leaves the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the record is an ordinary file
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def cell_folder(out: Path, cells: list[str], cell: str) -> Path:
    """Where the run ``out`` of ``cells`` keeps ``cell``'s files."""
    return out if len(cells) == 1 else out / cell


def history(folder: Path) -> Any:
    """The training history saved in ``folder``'s checkpoint."""
    from .train import History

    return History.from_arrays(load_checkpoint(folder / CHECKPOINT).history)


def sample_checkpoint(out: Path, cell: str | None) -> Path:
    """The checkpoint ``cuda-rnn sample`` reads from the run folder ``out``: the run's one
    cell, or ``cell``, or the first cell trained (said on stderr)."""
    if (out / CHECKPOINT).is_file():
        return out / CHECKPOINT
    run = out / RUN_FILE
    order = json.loads(run.read_text(encoding="utf-8"))["cells"] if run.is_file() else CELLS
    cells = [c for c in order if (out / c / CHECKPOINT).is_file()]
    if not cells:
        raise ValueError(f"--out: expected a run folder with {CHECKPOINT} (or <cell>/"
                         f"{CHECKPOINT}), got {str(out)!r}")
    if cell is None:
        cell = cells[0]
        others = f" (also there: {', '.join(cells[1:])}; choose with --cell)" if cells[1:] else ""
        print(f"cuda-rnn sample: sampling the {cell} model of {str(out)!r}{others}",
              file=sys.stderr)
    elif cell not in cells:
        raise ValueError(f"--cell: expected one of the run's cells {cells}, got {cell!r}")
    return out / cell / CHECKPOINT

