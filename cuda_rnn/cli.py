"""The ``cuda-rnn`` command: ``train``, ``sample``, ``vanish`` and ``gradcheck``.

``cuda-rnn train`` with no arguments is the main job: an LSTM and a tanh RNN on the adding
problem, a few minutes on a laptop CPU, ending in a side-by-side table against the 1/6
baseline. Bad arguments print one line to stderr and exit with status 2; a run that diverges
exits with status 1.
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

from .checkpoint import load_checkpoint
from .model import CELLS, SequenceModel
from .optim import SGD, Adam, Optimizer
from .experiments import compare_cells, sample_text
from .tasks import TASKS, CharLM, Task, make_task
from .train import SCHEDULES, TrainConfig, Trainer, TrainingDiverged

CHECKPOINT = "checkpoint.npz"
VANISH_CELLS = ("rnn-sigmoid", "rnn-tanh", "lstm", "gru")
GRADCHECK_INPUT = 3
GRADCHECK_TOL = 1e-6


class UsageError(Exception):
    """A bad argument found after parsing; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def _cells(text: str) -> list[str]:
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if not cells or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(CELLS)}, got {text!r}")
    return cells


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cuda-rnn`` (exposed for the docs and tests)."""
    parser = _Parser(prog="cuda-rnn", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train on a sequence task and write OUT/metrics.json")
    train.add_argument("--task", choices=TASKS, default="adding")
    train.add_argument("--cell", type=_cells, default=["lstm", "rnn-tanh"],
                       help="one cell or a comma-separated list, each trained in turn "
                            f"({', '.join(CELLS)}; default lstm,rnn-tanh)")
    train.add_argument("--hidden", type=_positive(int), default=64, help="units per layer")
    train.add_argument("--layers", type=_positive(int), default=1, help="recurrent layers")
    train.add_argument("--seq-len", type=_positive(int), default=None,
                       help="T (adding: length; copy: delay; charlm: window); task default")
    train.add_argument("--steps", type=_positive(int), default=None, help="batches (task default)")
    train.add_argument("--batch", type=_positive(int), default=64, help="sequences per step")
    train.add_argument("--lr", type=_positive(float), default=None,
                       help="learning rate (default 3e-3 for adam, 0.1 for sgd)")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    train.add_argument("--clip", type=float, default=1.0,
                       help="max global gradient norm; 0 turns clipping off")
    train.add_argument("--clip-value", type=_positive(float), default=None)
    train.add_argument("--tbptt", type=_tbptt, default=None, metavar="K1[,K2]",
                       help="truncated BPTT: K1 steps per update, K2 steps back (default K1)")
    train.add_argument("--schedule", choices=SCHEDULES, default="constant")
    train.add_argument("--warmup", type=int, default=0)
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--embed", action="store_true",
                       help="learned embedding instead of one-hot (token tasks)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--dtype", default="float32",
                       help="float32 or float64 (CUDA also float16, bfloat16)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--text", default=None, help="UTF-8 text file (needed by --task charlm)")
    train.add_argument("--out", default=None, help="output folder (default runs/<task>-T<T>)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in the output folder")
    train.add_argument("--eval-every", type=int, default=0,
                       help="test-set evaluation interval in steps (0: only at the end)")
    train.add_argument("--checkpoint-every", type=int, default=100,
                       help="checkpoint interval in steps (0: only at the end)")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--no-plots", action="store_true")

    sample = sub.add_parser("sample", help="generate text from a trained charlm run")
    sample.add_argument("--out", required=True, help="the run's output folder")
    sample.add_argument("--prime", default="\n")
    sample.add_argument("--length", type=_positive(int), default=500)
    sample.add_argument("--temperature", type=_positive(float), default=0.8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    vanish = sub.add_parser("vanish", help="||dL/dh_t|| vs t for RNN-sigmoid/tanh, LSTM, GRU")
    vanish.add_argument("--task", choices=("adding", "copy"), default="adding")
    vanish.add_argument("--cell", type=_cells, default=list(VANISH_CELLS))
    vanish.add_argument("--hidden", type=_positive(int), default=64)
    vanish.add_argument("--seq-len", type=_positive(int), default=100)
    vanish.add_argument("--batch", type=_positive(int), default=32)
    vanish.add_argument("--seed", type=int, default=0)
    vanish.add_argument("--train-steps", type=int, default=0,
                        help="also measure after this many training steps of each cell")
    vanish.add_argument("--out", default="runs/vanish")
    vanish.add_argument("--no-plots", action="store_true")

    grad = sub.add_parser("gradcheck", help="finite-difference check of a layer's BPTT")
    grad.add_argument("--cell", type=_cells, default=list(VANISH_CELLS))
    grad.add_argument("--hidden", type=_positive(int), default=5)
    grad.add_argument("--layers", type=_positive(int), default=2)
    grad.add_argument("--seq-len", type=_positive(int), default=4)
    grad.add_argument("--batch", type=_positive(int), default=3)
    grad.add_argument("--seed", type=int, default=0)
    return parser


# ----------------------------------------------------------------------------- train
TASK_DEFAULTS = {  # seq_len, steps
    "adding": (100, 3000),
    "copy": (100, 3000),
    "charlm": (100, 2000),
    "digits": (8, 1000),
}


def _task(args: argparse.Namespace) -> Task:
    seq_len = args.seq_len or TASK_DEFAULTS[args.task][0]
    if args.task == "digits":
        if args.seq_len not in (None, 8):
            raise UsageError(f"--seq-len: expected 8 (rows of an 8x8 digit) for --task digits, "
                             f"got {args.seq_len}")
        return make_task({"task": "digits"})
    config: dict[str, Any] = {"task": args.task, "seq_len": seq_len}
    if args.task == "charlm":
        if args.text is None:
            raise UsageError("--text: expected a UTF-8 text file for --task charlm, got none")
        config["path"] = args.text
    return make_task(config)


def _optimizer(args: argparse.Namespace, params: dict[str, Any]) -> Optimizer:
    if args.optimizer == "sgd":
        return SGD(params, args.lr or 0.1, momentum=args.momentum)
    return Adam(params, args.lr or 3e-3)


def _check_train_args(args: argparse.Namespace) -> None:
    if args.clip < 0:
        raise UsageError(f"--clip: expected a number >= 0 (0: no clipping), got {args.clip}")
    for flag in ("eval_every", "checkpoint_every", "warmup"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag.replace('_', '-')}: expected an integer >= 0, "
                             f"got {getattr(args, flag)}")


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
    }
    if task.loss_kind == "xent":
        metrics["test_perplexity"] = math.exp(metrics["test_loss"])
    return metrics


def train_one(args: argparse.Namespace, task: Task, cell: str, out: Path) -> dict[str, Any]:
    """Train one cell on ``task`` into ``out`` and return its metrics (also in metrics.json)."""
    steps = args.steps or TASK_DEFAULTS[args.task][1]
    model = SequenceModel(
        cell, task.input_size, args.hidden, task.output_size, num_layers=args.layers,
        input_kind="embedding" if args.embed and task.input_kind == "onehot" else task.input_kind,
        dropout=args.dropout, dtype=args.dtype, device=args.device, seed=args.seed,
    )
    config = TrainConfig(
        steps=steps, batch_size=args.batch, clip=args.clip or None, clip_value=args.clip_value,
        tbptt=args.tbptt, schedule=args.schedule, warmup=args.warmup,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
    )
    run_config = {"model": model.config, "task": task.config(), "args": {
        k: v for k, v in vars(args).items() if k != "cell"} | {"cell": cell}}
    if isinstance(task, CharLM):
        run_config["vocab"] = task.vocab
    trainer = Trainer(model, task, _optimizer(args, model.parameters()), config,
                      seed=args.seed, checkpoint_path=out / CHECKPOINT, run_config=run_config,
                      progress=not args.no_progress)
    resumed_from = 0
    if args.resume:
        if not trainer.resume():
            raise UsageError(f"--resume: expected a checkpoint at {str(out / CHECKPOINT)!r}, "
                             "found none")
        resumed_from = trainer.step
        if not args.no_progress:
            print(f"resuming {cell} from step {resumed_from}", file=sys.stderr)
    start = time.perf_counter()
    trainer.fit()
    wall_s = time.perf_counter() - start
    metrics = _metrics(task, args, cell, trainer, wall_s, resumed_from)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
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


def cmd_train(args: argparse.Namespace) -> int:
    _check_train_args(args)
    task = _task(args)
    seq = task.seq_len if task.name != "copy" else task.delay
    out = Path(args.out or f"runs/{task.name}-T{seq}")
    rows = []
    for cell in args.cell:
        folder = out if len(args.cell) == 1 else out / cell
        folder.mkdir(parents=True, exist_ok=True)
        # A diverging run is reported once, by the Trainer's guard, not by NumPy's warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            rows.append(train_one(args, task, cell, folder))
    print(f"{task.name}: loss = {'MSE' if task.loss_kind == 'mse' else 'nats per step'}; "
          f"baseline = {task.baseline_name}; results in {out}")
    print(_table(rows))
    if len(rows) > 1 and not args.no_plots:
        from .plots import plot_loss_curves

        histories = {m["cell"]: _history(out / m["cell"]) for m in rows}
        plot_loss_curves(histories, out / "loss.png", baseline=task.baseline,
                         title=f"{task.name} T={seq}")
    return 0


def _history(folder: Path) -> Any:
    from .train import History

    return History.from_arrays(load_checkpoint(folder / CHECKPOINT).history)


# ----------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(Path(args.out) / CHECKPOINT)
    config = ckpt.meta.get("config", {})
    vocab = config.get("vocab")
    if vocab is None:
        task = config.get("task", {}).get("task")
        raise UsageError(f"--out: expected a charlm run, got a {task} run")
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
    norms = compare_cells(args.cell, task, args.hidden, args.batch, args.seed, args.train_steps)
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
    if not args.no_plots:
        from .plots import plot_grad_norms

        plot_grad_norms(norms, out / "vanish.png",
                        title=f"{task.name} T={args.seq_len}, hidden {args.hidden}")
    print(f"written: {out / 'vanish.json'}")
    return 0


# ----------------------------------------------------------------------------- gradcheck
def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .diagnostics import gradcheck
    from .model import make_recurrent

    rng = np.random.default_rng(args.seed)
    failed = 0
    print(f"BPTT vs central differences, float64: T={args.seq_len}, batch {args.batch}, "
          f"hidden {args.hidden}, {args.layers} layer(s); tolerance {GRADCHECK_TOL:g}")
    for cell in args.cell:
        layer = make_recurrent(cell, GRADCHECK_INPUT, args.hidden, args.layers, dtype="float64",
                               device="cpu", seed=args.seed)
        x = rng.standard_normal((args.seq_len, args.batch, GRADCHECK_INPUT))
        result = gradcheck(layer, x, seed=args.seed)
        ok = result.passed(GRADCHECK_TOL)
        failed += not ok
        print(f"{cell:<12} max relative error {result.max_error:.3e}  {'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "vanish": cmd_vanish,
            "gradcheck": cmd_gradcheck}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cuda-rnn`` and ``python -m cuda_rnn``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"cuda-rnn {args.command}"
    try:
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
