"""Run folders as a user meets them, each command in its own process: sample on the folder that
train printed, resume after a kill -9, resume with other settings, no silent overwrite, help
text, and the progress and file names that vanish and gradcheck print."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cuda_rnn.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seq-len", "6", "--hidden", "6", "--batch", "4", "--steps", "3", "--no-progress",
        "--no-plots"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def cuda_rnn(*argv: str, cwd: Path, status: int = 0) -> subprocess.CompletedProcess:
    """``python -m cuda_rnn ARGV`` in ``cwd``; asserts its exit status."""
    proc = subprocess.run([sys.executable, "-m", "cuda_rnn", *argv], env=_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == status, proc.stdout + proc.stderr
    return proc


def _text(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "t.txt"
    path.write_text("".join(rng.choice(list("to be or not\n"), 3000)), encoding="utf-8")
    return path


def test_sample_reads_the_folder_that_train_printed(tmp_path: Path,
                                                   rng: np.random.Generator) -> None:
    text = _text(tmp_path, rng)
    train = cuda_rnn("train", "--task", "charlm", "--text", str(text), "--cell", "gru,lstm",
                     *TINY, cwd=tmp_path)
    folder = train.stdout.split("results in ")[1].split()[0]
    assert folder == "runs/charlm-T6"
    first = cuda_rnn("sample", "--out", folder, "--length", "20", "--prime", "to", cwd=tmp_path)
    assert "sampling the gru model" in first.stderr and "also there: lstm" in first.stderr
    assert first.stdout.startswith("to") and len(first.stdout) == 2 + 20 + 1
    assert set(first.stdout) <= set("to be or not\n")
    lstm = cuda_rnn("sample", "--out", folder, "--cell", "lstm", "--length", "20", "--prime",
                    "to", cwd=tmp_path)
    assert lstm.stderr == "" and lstm.stdout != first.stdout
    wrong = cuda_rnn("sample", "--out", folder, "--cell", "rnn-tanh", cwd=tmp_path, status=2)
    assert "--cell: expected one of the run's cells ['gru', 'lstm'], got 'rnn-tanh'" in wrong.stderr


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.005)


def _kill_when(path: Path, argv: list[str], cwd: Path) -> None:
    """Start ``cuda-rnn ARGV`` and kill -9 it as soon as ``path`` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "cuda_rnn", *argv], env=_env(), cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(path, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_resume_after_kill_skips_finished_cells_starts_and_continues_the_others(
    tmp_path: Path,
) -> None:
    steps = 400
    run = ["train", "--seq-len", "20", "--hidden", "8", "--batch", "8", "--steps", str(steps),
           "--checkpoint-every", "200", "--no-progress", "--no-plots"]
    out = tmp_path / "runs" / "adding-T20"
    # Killed during the second cell, before its first checkpoint.
    _kill_when(out / "lstm" / "metrics.json", run, tmp_path)
    assert not (out / "rnn-tanh" / "checkpoint.npz").exists()
    lstm_files = {n: (out / "lstm" / n).read_bytes() for n in ("checkpoint.npz", "metrics.json")}
    # Resumed, and killed again during the second cell, after one of its checkpoints.
    _kill_when(out / "rnn-tanh" / "checkpoint.npz", run + ["--resume"], tmp_path)
    killed_at = load_checkpoint(out / "rnn-tanh" / "checkpoint.npz").meta["step"]
    assert 0 < killed_at < steps
    resumed = cuda_rnn(*run, "--resume", cwd=tmp_path)
    assert f"lstm: finished at step {steps}, skipped" in resumed.stdout
    assert f"rnn-tanh: resumed from step {killed_at}" in resumed.stdout
    assert {n: (out / "lstm" / n).read_bytes() for n in lstm_files} == lstm_files
    # The twice-killed cell ends exactly where one run in one go ends.
    cuda_rnn(*run, "--cell", "rnn-tanh", "--out", "one-go", cwd=tmp_path)
    want = load_checkpoint(tmp_path / "one-go" / "checkpoint.npz")
    got = load_checkpoint(out / "rnn-tanh" / "checkpoint.npz")
    assert got.meta["step"] == steps and want.params.keys() == got.params.keys()
    for name, value in want.params.items():
        assert np.array_equal(got.params[name], value), name
    metrics = json.loads((out / "rnn-tanh" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == killed_at and metrics["steps"] == steps
    assert metrics["test_loss"] == json.loads((tmp_path / "one-go" / "metrics.json")
                                              .read_text())["test_loss"]


def test_a_run_that_was_never_started_cannot_be_resumed(tmp_path: Path) -> None:
    proc = cuda_rnn("train", "--resume", *TINY, cwd=tmp_path, status=2)
    assert proc.stderr.strip() == ("cuda-rnn train: error: --resume: expected a run in "
                                   "'runs/adding-T6' (its run.json), found none; train without "
                                   "--resume to start one")


def test_resume_keeps_the_model_refuses_going_back_and_says_what_changed(
    tmp_path: Path,
) -> None:
    cuda_rnn("train", "--cell", "gru", "--out", "r", "--checkpoint-every", "2", *TINY,
             cwd=tmp_path)
    other = cuda_rnn("train", "--out", "r", "--resume", "--hidden", "9", cwd=tmp_path, status=2)
    assert ("--resume: the run in 'r' was made with --task adding --seq-len 6 --cell gru "
            "--hidden 6 --layers 1") in other.stderr
    assert "got --hidden 9 (the run has 6)" in other.stderr
    cell = cuda_rnn("train", "--out", "r", "--resume", "--cell", "lstm", cwd=tmp_path, status=2)
    assert "got --cell lstm (the run has gru)" in cell.stderr
    back = cuda_rnn("train", "--out", "r", "--resume", "--steps", "2", cwd=tmp_path, status=2)
    assert back.stderr.strip() == ("cuda-rnn train: error: --steps: expected at least 3, the "
                                   "step of 'r/checkpoint.npz', got 2")
    assert back.stdout == ""
    more = cuda_rnn("train", "--out", "r", "--resume", "--steps", "5", "--lr", "0.01",
                    "--batch", "3", "--no-progress", cwd=tmp_path)
    lines = more.stdout.splitlines()
    assert lines[0] == ("resumed with changed settings: --steps 5 (the run has 3); --batch 3 "
                        "(the run has 4); --lr 0.01 (the run has 0.003); from here on the run "
                        "differs from one trained in one go")
    assert lines[1] == "gru: resumed from step 3"
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["lr"] == 0.01 and metrics["batch"] == 3
    again = cuda_rnn("train", "--out", "r", "--resume", cwd=tmp_path)
    assert again.stdout.startswith("gru: finished at step 5, skipped")


def test_a_folder_holding_a_run_is_not_overwritten_without_force(tmp_path: Path) -> None:
    cuda_rnn("train", "--cell", "lstm", *TINY, cwd=tmp_path)
    out = tmp_path / "runs" / "adding-T6"
    before = (out / "checkpoint.npz").read_bytes()
    again = cuda_rnn("train", "--cell", "lstm", *TINY, "--seed", "1", cwd=tmp_path, status=2)
    assert again.stderr.strip() == (
        "cuda-rnn train: error: --out: 'runs/adding-T6' already holds a run (run.json); "
        "--resume continues it, --force replaces it, or choose another --out")
    assert (out / "checkpoint.npz").read_bytes() == before
    cuda_rnn("train", "--cell", "lstm,gru", *TINY, "--seed", "1", "--force", cwd=tmp_path)
    assert not (out / "checkpoint.npz").exists() and (out / "gru" / "checkpoint.npz").exists()
    assert json.loads((out / "run.json").read_text())["cells"] == ["lstm", "gru"]


def test_help_shows_the_defaults(tmp_path: Path) -> None:
    text = " ".join(cuda_rnn("train", "--help", cwd=tmp_path).stdout.split())
    for fragment in ("--task {adding,copy,charlm,digits} the sequence task (default: adding)",
                     "(default: lstm,rnn-tanh)", "recurrent layers (default: 1)",
                     "charlm 256", "turns clipping off (default: 1.0)",
                     "(0: only at the end) (default: 100)"):
        assert fragment in text
    sample = " ".join(cuda_rnn("sample", "--help", cwd=tmp_path).stdout.split())
    assert "characters to generate (default: 500)" in sample and "(default: 0.8)" in sample


def test_charlm_defaults_to_the_readme_model(tmp_path: Path, rng: np.random.Generator) -> None:
    text = _text(tmp_path, rng)
    cuda_rnn("train", "--task", "charlm", "--text", str(text), "--cell", "lstm", "--seq-len",
             "6", "--steps", "1", "--no-progress", "--no-plots", cwd=tmp_path)
    metrics = json.loads((tmp_path / "runs" / "charlm-T6" / "metrics.json").read_text())
    assert metrics["hidden"] == 256 and metrics["batch"] == 32
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "LSTM H=256" in readme and "B=32" in readme


def test_vanish_shows_progress_and_names_what_it_wrote(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    proc = cuda_rnn("vanish", "--cell", "lstm,rnn-tanh", "--seq-len", "5", "--hidden", "4",
                    "--batch", "3", "--train-steps", "4", "--out", "v", cwd=tmp_path)
    assert "training each of lstm, rnn-tanh for 4 steps" in proc.stderr
    if importlib.util.find_spec("tqdm") is not None:
        for cell in ("lstm", "rnn-tanh"):  # a finished bar per cell
            assert re.search(rf"{cell}: .*\b4/4\b", proc.stderr), proc.stderr
    assert proc.stdout.splitlines()[-1] == "written: v/vanish.json, v/vanish.png"
    assert (tmp_path / "v" / "vanish.png").stat().st_size > 0
    quiet = cuda_rnn("vanish", "--cell", "gru", "--seq-len", "5", "--hidden", "4", "--batch",
                     "3", "--train-steps", "2", "--out", "q", "--no-progress", "--no-plots",
                     cwd=tmp_path)
    assert quiet.stderr == "" and quiet.stdout.splitlines()[-1] == "written: q/vanish.json"


def test_gradcheck_takes_a_device(tmp_path: Path) -> None:
    args = ["gradcheck", "--cell", "gru", "--seq-len", "3", "--hidden", "3", "--batch", "2",
            "--layers", "1"]
    cpu = cuda_rnn(*args, "--device", "cpu", cwd=tmp_path)
    assert cpu.stdout.startswith("BPTT vs central differences, float64 on cpu:")
    assert cpu.stdout.splitlines()[1].endswith("ok")
    from cuda_rnn.backend import cuda_available

    if not cuda_available():
        gpu = cuda_rnn(*args, "--device", "cuda", cwd=tmp_path, status=2)
        assert "device='cuda' is not available" in gpu.stderr
