"""The ``cuda-rnn`` command: ``train``, ``sample``, ``vanish`` and ``gradcheck``.

``cuda-rnn train`` with no arguments is the main job: an LSTM and a tanh RNN on the adding
problem, a few minutes on a laptop CPU, ending in a side-by-side table against the 1/6
baseline. Bad arguments print one line to stderr and exit with status 2; a run that diverges
exits with status 1.

A training run lives in one folder (``--out``, see :mod:`cuda_rnn.runs`), never overwritten
silently: ``--resume`` continues it, ``--force`` replaces it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

import numpy as np

from . import runs
from .checkpoint import Checkpoint, load_checkpoint
from .experiments import COMPARISON_CELLS, compare_cells, resolve_cell, sample_text
from .model import CELLS, SequenceModel
from .optim import SGD, Adam, Optimizer
from .tasks import TASKS, CharLM, Task, make_task
from .train import SCHEDULES, TrainConfig, Trainer, TrainingDiverged

VANISH_CELLS = ("rnn-sigmoid", "rnn-tanh", "lstm", "lstm-carousel", "gru")
GRADCHECK_INPUT = 3
GRADCHECK_TOL = 1e-6
TASK_DEFAULTS = {  # seq_len, steps, hidden, batch
    "adding": (100, 3000, 64, 64),
    "copy": (100, 3000, 64, 64),
    "charlm": (100, 3000, 256, 32),
    "digits": (8, 1000, 64, 64),
}


class UsageError(Exception):
    """A bad argument found after parsing; reported as one line with exit status 2, as are
    the ValueErrors of :mod:`cuda_rnn.runs` and of the library."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default (lists comma-joined; flags, and options
    whose default the help text explains, without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS
        if not action.option_strings or unset or "default" in text:
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        elif isinstance(default, str) and not default.strip():
            default = repr(default)
        return f"{text} (default: {default})".replace("%", "%%")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        message = f"expected a positive {'integer' if kind is int else 'number'}, got {text!r}"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(message) from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(message)
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _probability(text: str) -> float:
    message = f"expected a number in [0, 1), got {text!r}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(message)
    return value


def _tbptt(text: str) -> tuple[int, int]:
    """"K1" or "K1,K2" -> (k1, k2), with k2 = k1 when omitted."""
    parts = text.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected K1 or K1,K2 (integers >= 1), got {text!r}")
    return values[0], values[-1]


def _cell_list(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        cells = [c.strip() for c in text.split(",") if c.strip()]
        bad = [c for c in cells if c not in allowed]
        if not cells or bad:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return cells

    parse.__name__ = "cell list"
    return parse


_cells = _cell_list(CELLS)
_comparison_cells = _cell_list(COMPARISON_CELLS)


def _task_defaults_help(column: int) -> str:
    return ", ".join(f"{task} {values[column]}" for task, values in TASK_DEFAULTS.items())


def _add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--task", choices=TASKS, default="adding", help="the sequence task")
    train.add_argument("--cell", type=_cells, default=["lstm", "rnn-tanh"],
                       help=f"one cell or a comma-separated list, each trained in turn "
                            f"({', '.join(CELLS)})")
    train.add_argument("--hidden", type=_positive(int), default=None,
                       help=f"units per layer (default per task: {_task_defaults_help(2)})")
    train.add_argument("--layers", type=_positive(int), default=1, help="recurrent layers")
    train.add_argument("--seq-len", type=_positive(int), default=None,
                       help="T (adding: length; copy: delay; charlm: window) (default per "
                            f"task: {_task_defaults_help(0)})")
    train.add_argument("--steps", type=_positive(int), default=None,
                       help=f"batches (default per task: {_task_defaults_help(1)})")
    train.add_argument("--batch", type=_positive(int), default=None,
                       help=f"sequences per step (default per task: {_task_defaults_help(3)})")
    train.add_argument("--lr", type=_positive(float), default=None,
                       help="learning rate (default 3e-3 for adam, 0.1 for sgd)")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                       help="the optimizer")
    train.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    train.add_argument("--clip", type=float, default=1.0,
                       help="max global gradient norm; 0 turns clipping off")
    train.add_argument("--clip-value", type=_positive(float), default=None,
                       help="clamp every gradient element into [-V, V] (default: no clamp)")
    train.add_argument("--tbptt", type=_tbptt, default=None, metavar="K1[,K2]",
                       help="truncated BPTT: K1 steps per update, K2 steps back (default: "
                            "full BPTT; K2 defaults to K1)")
    train.add_argument("--schedule", choices=SCHEDULES, default="constant",
                       help="learning-rate schedule")
    train.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    train.add_argument("--dropout", type=float, default=0.0, help="between stacked layers")
    train.add_argument("--embed", action="store_true",
                       help="learned embedding instead of one-hot (token tasks)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: CUDA when CuPy sees a GPU, else the CPU")
    train.add_argument("--dtype", default="float32",
                       help="float32 or float64 (CUDA also float16, bfloat16)")
    train.add_argument("--seed", type=int, default=0, help="seeds the weights and the batches")
    train.add_argument("--text", default=None, help="UTF-8 text file (needed by --task charlm)")
    train.add_argument("--out", default=None, help="the run's folder (default runs/<task>-T<T>)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out: finished cells are skipped, "
                            "checkpointed ones continue exactly, the others start; settings "
                            "not given are the run's")
    train.add_argument("--force", action="store_true",
                       help="replace the run already in --out")
    train.add_argument("--eval-every", type=int, default=0,
                       help="test-set evaluation interval in steps (0: only at the end)")
    train.add_argument("--checkpoint-every", type=int, default=100,
                       help="checkpoint interval in steps (0: only at the end)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-plots", action="store_true", help="no loss.png")
    lstm = train.add_argument_group("LSTM variants", "set on the LSTM of --cell only")
    lstm.add_argument("--proj-size", type=_positive(int), default=None,
                      help="project h to this many units (torch.nn.LSTM's proj_size)")
    lstm.add_argument("--peephole", action="store_true",
                      help="peephole connections: i, f read c_{t-1}, o reads c_t")
    lstm.add_argument("--no-forget-gate", action="store_true",
                      help="the original LSTM without a forget gate: c_t = c_{t-1} + i g")
    lstm.add_argument("--forget-bias", type=float, default=None,
                      help="initial forget-gate bias (b_ih's forget rows; b_hh's set to 0)")
    lstm.add_argument("--layer-norm", action="store_true",
                      help="layer-normalised LSTM: LN of both products and of c")
    lstm.add_argument("--zoneout-cell", type=_probability, default=None,
                      help="zoneout of the cell state c: probability a unit keeps its value")
    reg = train.add_argument_group("recurrent regularisers", "set on every cell of --cell")
    reg.add_argument("--zoneout", type=_probability, default=None,
                     help="zoneout of h: probability a unit keeps its previous value")
    reg.add_argument("--recurrent-dropout", type=_probability, default=None,
                     help="dropout of h_{t-1} in the recurrent product, one mask per sequence")
    reg.add_argument("--weight-dropout", type=_probability, default=None,
                     help="DropConnect on W_hh, one mask per forward")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cuda-rnn`` (exposed for the docs and tests)."""
    parser = _Parser(prog="cuda-rnn", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    kind = {"formatter_class": _DefaultsFormatter}

    train = sub.add_parser("train", help="train on a sequence task into a run folder", **kind)
    _add_train_arguments(train)

    sample = sub.add_parser("sample", help="generate text from a trained charlm run", **kind)
    sample.add_argument("--out", required=True,
                        help="the run's folder (the one `cuda-rnn train` printed)")
    sample.add_argument("--cell", choices=CELLS, default=None,
                        help="which cell of a run of several (default: the first trained)")
    sample.add_argument("--prime", default="\n", help="text that sets the state first")
    sample.add_argument("--length", type=_positive(int), default=500,
                        help="characters to generate")
    sample.add_argument("--temperature", type=_positive(float), default=0.8,
                        help="below 1 sharpens, above 1 flattens the distribution")
    sample.add_argument("--seed", type=int, default=0, help="seeds the draws")
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when CuPy sees a GPU, else the CPU")

    vanish = sub.add_parser(
        "vanish", help="||dL/dh_t|| vs t for RNN-sigmoid/tanh, LSTM, the LSTM without a "
        "forget gate (lstm-carousel), GRU", **kind)
    vanish.add_argument("--task", choices=("adding", "copy"), default="adding",
                        help="the task whose loss is differentiated")
    vanish.add_argument("--cell", type=_comparison_cells, default=list(VANISH_CELLS),
                        help="comma-separated cells")
    vanish.add_argument("--hidden", type=_positive(int), default=64, help="units")
    vanish.add_argument("--seq-len", type=_positive(int), default=100, help="T")
    vanish.add_argument("--batch", type=_positive(int), default=32,
                        help="sequences the norm is taken over")
    vanish.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch")
    vanish.add_argument("--train-steps", type=int, default=0,
                        help="also measure after this many training steps of each cell")
    vanish.add_argument("--out", default="runs/vanish",
                        help="folder for vanish.json and vanish.png")
    vanish.add_argument("--no-progress", action="store_true", help="no progress bar")
    vanish.add_argument("--no-plots", action="store_true", help="no vanish.png")

    grad = sub.add_parser("gradcheck", help="finite-difference check of a layer's BPTT",
                          **kind)
    grad.add_argument("--cell", type=_comparison_cells, default=list(VANISH_CELLS),
                      help="comma-separated cells")
    grad.add_argument("--hidden", type=_positive(int), default=5, help="units per layer")
    grad.add_argument("--layers", type=_positive(int), default=2, help="recurrent layers")
    grad.add_argument("--seq-len", type=_positive(int), default=4, help="T")
    grad.add_argument("--batch", type=_positive(int), default=3, help="sequences")
    grad.add_argument("--seed", type=int, default=0, help="seeds the weights and the input")
    grad.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                      help="auto: CUDA when CuPy sees a GPU, else the CPU")
    return parser


def given_train_flags(argv: Sequence[str]) -> set[str]:
    """The destinations of the ``train`` options that ``argv`` (after ``train``) sets."""
    parser = _Parser(prog="cuda-rnn train")
    _add_train_arguments(parser)
    parser.set_defaults(**dict.fromkeys(vars(parser.parse_args([]))))
    return {dest for dest, value in vars(parser.parse_args(list(argv))).items()
            if value is not None}


# ----------------------------------------------------------------------------- train
def _resolve_defaults(args: argparse.Namespace) -> None:
    """Fill the settings whose default depends on the task or the optimizer."""
    seq_len, steps, hidden, batch = TASK_DEFAULTS[args.task]
    args.seq_len = args.seq_len or seq_len
    args.steps = args.steps or steps
    args.hidden = args.hidden or hidden
    args.batch = args.batch or batch
    args.lr = args.lr or (0.1 if args.optimizer == "sgd" else 3e-3)


def _task(args: argparse.Namespace) -> Task:
    if args.task == "digits":
        if args.seq_len != 8:
            raise UsageError(f"--seq-len: expected 8 (rows of an 8x8 digit) for --task digits, "
                             f"got {args.seq_len}")
        return make_task({"task": "digits"})
    config: dict[str, Any] = {"task": args.task, "seq_len": args.seq_len}
    if args.task == "charlm":
        if args.text is None:
            raise UsageError("--text: expected a UTF-8 text file for --task charlm, got none")
        config["path"] = args.text
    return make_task(config)


def _optimizer(args: argparse.Namespace, params: dict[str, Any]) -> Optimizer:
    if args.optimizer == "sgd":
        return SGD(params, args.lr, momentum=args.momentum)
    return Adam(params, args.lr)


def _check_train_args(args: argparse.Namespace) -> None:
    if args.clip < 0:
        raise UsageError(f"--clip: expected a number >= 0 (0: no clipping), got {args.clip}")
    for dest in ("eval_every", "checkpoint_every", "warmup"):
        if getattr(args, dest) < 0:
            raise UsageError(f"{runs.flag(dest)}: expected an integer >= 0, "
                             f"got {getattr(args, dest)}")
    if args.resume and args.force:
        raise UsageError("--force: expected either --resume (continue the run in --out) or "
                         "--force (replace it), got both")
    _check_lstm_flags(args)


def cell_options(args: argparse.Namespace, cell: str) -> dict[str, Any]:
    """The options of ``cell`` the train flags set (those left at their defaults omitted):
    the regularisers for every cell, the LSTM's variants for the LSTM."""
    options: dict[str, Any] = {f: getattr(args, f) for f in runs.REGULARISER_FLAGS
                               if getattr(args, f)}
    if cell != "lstm":
        return options
    if args.zoneout_cell:
        options["zoneout_cell"] = args.zoneout_cell
    if args.proj_size:
        options["proj_size"] = args.proj_size
    if args.peephole:
        options["peephole"] = True
    if args.no_forget_gate:
        options["forget_gate"] = False
    if args.forget_bias is not None:
        options["forget_bias"] = args.forget_bias
    if args.layer_norm:
        options["layer_norm"] = True
    return options


def _check_lstm_flags(args: argparse.Namespace) -> None:
    given = [runs.flag(f) for f in runs.LSTM_FLAGS if getattr(args, f) not in (None, False)]
    if given and "lstm" not in args.cell:
        raise UsageError(f"{given[0]}: an LSTM option; expected --cell to include lstm, got "
                         f"{','.join(args.cell)}")


def _metrics(task: Task, args: argparse.Namespace, cell: str, trainer: Trainer,
             wall_s: float, resumed_from: int) -> dict[str, Any]:
    losses = trainer.history.loss
    tail = losses[-max(1, min(50, len(losses) // 10)):]
    metrics = {
        "task": task.name, "cell": cell, "hidden": args.hidden, "layers": args.layers,
        "seq_len": task.seq_len if task.name != "copy" else task.delay,
        "steps": trainer.step, "batch": args.batch, "lr": trainer.base_lr,
        "tbptt": list(args.tbptt) if args.tbptt else None,
        "device": trainer.model.device, "dtype": trainer.model.dtype,
        "final_train_loss": float(np.mean(tail)),
        "test_loss": trainer.history.eval_loss[-1],
        "baseline": task.baseline, "baseline_name": task.baseline_name,
        "wall_s": round(wall_s, 2), "resumed_from_step": resumed_from,
        "parameters": int(sum(p.size for p in trainer.model.parameters().values())),
        "options": trainer.model.config["options"],
        "evals": [[s, v] for s, v in zip(trainer.history.eval_step,
                                         trainer.history.eval_loss)],
    }
    if task.loss_kind == "xent":
        metrics["test_perplexity"] = math.exp(metrics["test_loss"])
    return metrics


def train_one(args: argparse.Namespace, task: Task, cell: str, out: Path,
              checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Train one cell on ``task`` into ``out``, continuing from ``checkpoint`` when given, and
    return its metrics (also in metrics.json)."""
    if (checkpoint is not None and checkpoint.meta["step"] == args.steps
            and (out / runs.METRICS).is_file()):
        print(f"{cell}: finished at step {args.steps}, skipped")
        return json.loads((out / runs.METRICS).read_text(encoding="utf-8"))
    model = SequenceModel(
        cell, task.input_size, args.hidden, task.output_size, num_layers=args.layers,
        input_kind="embedding" if args.embed and task.input_kind == "onehot" else task.input_kind,
        dropout=args.dropout, dtype=args.dtype, device=args.device, seed=args.seed,
        options=cell_options(args, cell),
    )
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch, clip=args.clip or None,
        clip_value=args.clip_value, tbptt=args.tbptt, schedule=args.schedule,
        warmup=args.warmup, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
    )
    run_config = {"model": model.config, "task": task.config(),
                  "args": runs.run_settings(args) | {"cell": cell}}
    if isinstance(task, CharLM):
        run_config["vocab"] = task.vocab
    trainer = Trainer(model, task, _optimizer(args, model.parameters()), config,
                      seed=args.seed, checkpoint_path=out / runs.CHECKPOINT, run_config=run_config,
                      progress=not args.no_progress)
    resumed_from = 0
    if checkpoint is not None:
        trainer.restore(checkpoint)
        resumed_from = trainer.step
        print(f"{cell}: resumed from step {resumed_from}")
    elif args.resume:
        print(f"{cell}: no checkpoint yet, started at step 0")
    start = time.perf_counter()
    trainer.fit()
    wall_s = time.perf_counter() - start
    metrics = _metrics(task, args, cell, trainer, wall_s, resumed_from)
    runs.write_json(out / runs.METRICS, metrics)
    if not args.no_plots:
        from .plots import plot_loss_curves

        plot_loss_curves({cell: trainer.history}, out / "loss.png", baseline=task.baseline,
                         title=f"{task.name} T={metrics['seq_len']}")
    return metrics


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'cell':<12}{'hidden':>7}{'T':>6}{'steps':>7}{'train':>10}{'test':>10}" \
           f"{'baseline':>10}{'test/base':>11}{'wall s':>9}"
    lines = [head, "-" * len(head)]
    for m in rows:
        lines.append(
            f"{m['cell']:<12}{m['hidden']:>7}{m['seq_len']:>6}{m['steps']:>7}"
            f"{m['final_train_loss']:>10.4g}{m['test_loss']:>10.4g}{m['baseline']:>10.4g}"
            f"{m['test_loss'] / m['baseline']:>11.3f}{m['wall_s']:>9.1f}"
        )
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace, given: set[str] | None = None) -> int:
    """``cuda-rnn train``; ``given`` names the options set on the command line (what
    ``--resume`` keeps from the command instead of taking it from the run)."""
    _check_train_args(args)
    out = Path(args.out or f"runs/{args.task}-T{args.seq_len or TASK_DEFAULTS[args.task][0]}")
    checkpoints: dict[str, Checkpoint | None] = {}
    if args.resume:
        changed = runs.take_run_settings(args, set(vars(args)) if given is None else given, out)
        checkpoints = runs.checkpoints(out, args.cell, args.steps)
        if changed:
            print(f"resumed with changed settings: {'; '.join(changed)}; from here on the run "
                  "differs from one trained in one go")
    else:
        _resolve_defaults(args)
        runs.claim(out, args.force)
    task = _task(args)
    out.mkdir(parents=True, exist_ok=True)
    record = {"cells": args.cell, "settings": runs.run_settings(args)}
    runs.write_json(out / runs.RUN_FILE, record)
    rows = []
    for cell in args.cell:
        folder = runs.cell_folder(out, args.cell, cell)
        folder.mkdir(parents=True, exist_ok=True)
        # A diverging run is reported once, by the Trainer's guard, not by NumPy's warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            rows.append(train_one(args, task, cell, folder, checkpoints.get(cell)))
    print(f"{task.name}: loss = {'MSE' if task.loss_kind == 'mse' else 'nats per step'}; "
          f"baseline = {task.baseline_name}; results in {out}")
    print(_table(rows))
    if len(rows) > 1 and not args.no_plots:
        from .plots import plot_loss_curves

        histories = {m["cell"]: runs.history(out / m["cell"]) for m in rows}
        plot_loss_curves(histories, out / "loss.png", baseline=task.baseline,
                         title=f"{task.name} T={args.seq_len}")
    return 0


# ----------------------------------------------------------------------------- sample
def _article(word: str) -> str:
    return f"an {word}" if word[:1] in tuple("aeiou") else f"a {word}"


def cmd_sample(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(runs.sample_checkpoint(Path(args.out), args.cell))
    config = ckpt.meta.get("config", {})
    vocab = config.get("vocab")
    if vocab is None:
        task = str(config.get("task", {}).get("task"))
        raise UsageError(f"--out: expected a charlm run, got {_article(task)} run")
    if args.cell is not None and config["model"]["cell"] != args.cell:
        raise UsageError(f"--cell: expected the run's cell {config['model']['cell']!r}, "
                         f"got {args.cell!r}")
    model = SequenceModel.from_config(config["model"], device=args.device)
    model.load_state_dict(ckpt.params)
    text = sample_text(model, vocab, args.prime, args.length, args.temperature,
                       np.random.default_rng(args.seed))
    sys.stdout.write(args.prime + text + "\n")
    return 0


# ----------------------------------------------------------------------------- vanish
def cmd_vanish(args: argparse.Namespace) -> int:
    if args.train_steps < 0:
        raise UsageError(f"--train-steps: expected an integer >= 0, got {args.train_steps}")
    task = make_task({"task": args.task, "seq_len": args.seq_len})
    if args.train_steps and not args.no_progress:
        print(f"cuda-rnn vanish: training each of {', '.join(args.cell)} for "
              f"{args.train_steps} steps", file=sys.stderr)
    norms = compare_cells(args.cell, task, args.hidden, args.batch, args.seed, args.train_steps,
                          progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"task": task.name, "seq_len": args.seq_len, "hidden": args.hidden,
              "batch": args.batch, "seed": args.seed, "train_steps": args.train_steps,
              "norms": {c: n.tolist() for c, n in norms.items()}}
    (out / "vanish.json").write_text(json.dumps(record) + "\n", encoding="utf-8")
    print(f"||dL/dh_t|| (Frobenius norm over a batch of {args.batch}), {task.name} "
          f"T={args.seq_len}, hidden {args.hidden}, loss at the last step")
    print(f"{'cell':<22}{'t=T-1':>11}{'t=T/2':>11}{'t=0':>11}{'t=0 / t=T-1':>14}")
    for label, n in norms.items():
        ratio = n[0] / n[-1] if n[-1] > 0 else float("nan")
        print(f"{label:<22}{n[-1]:>11.3e}{n[len(n) // 2]:>11.3e}{n[0]:>11.3e}{ratio:>14.3e}")
    written = [out / "vanish.json"]
    if not args.no_plots:
        from .plots import plot_grad_norms

        png = plot_grad_norms(norms, out / "vanish.png",
                              title=f"{task.name} T={args.seq_len}, hidden {args.hidden}")
        written += [png] if png is not None else []
    print(f"written: {', '.join(map(str, written))}")
    return 0


# ----------------------------------------------------------------------------- gradcheck
def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .diagnostics import gradcheck
    from .model import make_recurrent

    rng = np.random.default_rng(args.seed)
    failed = 0
    layers = []
    for name in args.cell:
        cell, options = resolve_cell(name)
        layers.append(make_recurrent(cell, GRADCHECK_INPUT, args.hidden, args.layers,
                                     dtype="float64", device=args.device, seed=args.seed,
                                     options=options))
    print(f"BPTT vs central differences, float64 on {layers[0].device}: T={args.seq_len}, "
          f"batch {args.batch}, hidden {args.hidden}, {args.layers} layer(s); tolerance "
          f"{GRADCHECK_TOL:g}")
    for cell, layer in zip(args.cell, layers):
        x = rng.standard_normal((args.seq_len, args.batch, GRADCHECK_INPUT))
        result = gradcheck(layer, x, seed=args.seed)
        ok = result.passed(GRADCHECK_TOL)
        failed += not ok
        print(f"{cell:<14} max relative error {result.max_error:.3e}  {'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "vanish": cmd_vanish,
            "gradcheck": cmd_gradcheck}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cuda-rnn`` and ``python -m cuda_rnn``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"cuda-rnn {args.command}"
    try:
        if args.command == "train":
            return cmd_train(args, given_train_flags(argv[1:]))
        return COMMANDS[args.command](args)
    except (UsageError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if isinstance(exc, TrainingDiverged):
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
