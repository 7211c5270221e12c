"""Checkpoints: exact round trip, atomic writes, and kill-and-resume equality."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cuda_rnn.checkpoint as ckpt_mod
from cuda_rnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cuda_rnn.model import SequenceModel
from cuda_rnn.optim import Adam
from cuda_rnn.tasks import AddingProblem
from cuda_rnn.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint(rng: np.random.Generator) -> Checkpoint:
    gen = np.random.default_rng(int(rng.integers(1 << 62)))
    return Checkpoint(
        params={"rnn.weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32)},
        optimizer={"m/rnn.weight_ih_l0": rng.standard_normal((8, 3)), "steps": np.array(7)},
        history={"loss": rng.random(5)},
        meta={"step": 7, "rng": gen.bit_generator.state, "config": {"cell": "lstm"}},
    )


def test_round_trip_is_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    ck = _checkpoint(rng)
    path = tmp_path / "sub" / "c.npz"
    save_checkpoint(path, ck)
    back = load_checkpoint(path)
    assert back.meta == json.loads(json.dumps(ck.meta))
    for section in ("params", "optimizer", "history"):
        ours, theirs = getattr(ck, section), getattr(back, section)
        assert set(ours) == set(theirs)
        for k in ours:
            assert theirs[k].dtype == np.asarray(ours[k]).dtype
            assert np.array_equal(theirs[k], ours[k])
    gen = np.random.default_rng()
    gen.bit_generator.state = back.meta["rng"]
    ref = np.random.default_rng()
    ref.bit_generator.state = ck.meta["rng"]
    assert np.array_equal(gen.random(4), ref.random(4))


def test_a_failed_write_leaves_the_old_file_and_no_debris(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.npz"
    first = _checkpoint(rng)
    save_checkpoint(path, first)

    def torn_write(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.np, "savez", torn_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _checkpoint(rng))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]
    kept = load_checkpoint(path)
    assert np.array_equal(kept.params["rnn.weight_ih_l0"], first.params["rnn.weight_ih_l0"])


def test_load_rejects_missing_and_foreign_files(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="checkpoint: expected an existing .npz file"):
        load_checkpoint(tmp_path / "none.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=rng.standard_normal(3))
    with pytest.raises(ValueError, match="expected a cuda_rnn checkpoint with a 'meta' record"):
        load_checkpoint(foreign)


def _trainer(seed: int, path: Path, steps: int) -> Trainer:
    task = AddingProblem(6, test_size=32, test_seed=seed)
    model = SequenceModel("lstm", 2, 5, 1, num_layers=2, dropout=0.3, device="cpu", seed=seed)
    config = TrainConfig(steps=steps, batch_size=4, checkpoint_every=4, eval_every=5)
    return Trainer(model, task, Adam(model.parameters(), 1e-2), config, seed=seed + 1,
                   checkpoint_path=path)


def test_resume_reaches_the_same_parameters_bit_for_bit(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    seed = int(rng.integers(1 << 30))
    whole = _trainer(seed, tmp_path / "whole.npz", 14)
    whole.fit()
    path = tmp_path / "split.npz"
    first = _trainer(seed, path, 14)
    first.fit(stop_at=8)
    at_step_8 = path.read_bytes()
    first.fit()  # the run goes on past the checkpoint and is then lost, as if killed
    path.write_bytes(at_step_8)
    resumed = _trainer(seed, path, 14)
    assert resumed.resume() and resumed.step == 8
    resumed.fit()
    for k, v in whole.model.parameters().items():
        assert np.array_equal(resumed.model.parameters()[k], v), k
    assert resumed.history.loss == whole.history.loss
    assert resumed.history.eval_loss == whole.history.eval_loss
    assert resumed.optimizer.steps == whole.optimizer.steps == 14


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cuda_rnn", "train", "--task", "adding", "--cell", "gru",
            "--seq-len", "10", "--hidden", "8", "--batch", "8", "--steps", "400",
            "--checkpoint-every", "1", "--no-progress", "--no-plots", "--seed", "3",
            "--out", str(out), *extra]


@pytest.mark.slow
def test_killed_cli_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    subprocess.run(_cli(tmp_path / "whole"), env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoint.npz"
    while proc.poll() is None and not ckpt.exists():
        time.sleep(0.01)  # polling for the first checkpoint, then killing mid-run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(ckpt).meta["step"]
    assert 1 <= step <= 400
    subprocess.run(_cli(killed, "--resume"), env=env, check=True, capture_output=True)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b = load_checkpoint(ckpt)
    assert b.meta["step"] == 400
    for k, v in a.params.items():
        assert np.array_equal(b.params[k], v), k
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == step
