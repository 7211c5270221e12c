"""Two processes under DistributedDataParallel (gloo, CPU) train cuda_rnn.torch.LSTM exactly
like one process on the whole batch."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ddp_train.py"


def _example():
    spec = importlib.util.spec_from_file_location("ddp_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_gloo_ranks_equal_single_process_on_the_full_batch(
        rng: np.random.Generator, tmp_path: Path) -> None:
    seed, steps, batch, lr = int(rng.integers(2**20)), 4, 8, 0.5
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--world-size", "2", "--dtype", "float64",
         "--steps", str(steps), "--batch-size", str(batch), "--lr", str(lr),
         "--seed", str(seed), "--save", str(tmp_path)],
        env=env, timeout=120, capture_output=True, text=True,
    )
    assert run.returncode == 0, f"ddp_train.py exited with {run.returncode}:\n{run.stderr[-3000:]}"
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    example = _example()
    model = example.build_model(seed, torch.float64)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for x, target in example.make_batches(seed, steps, batch, torch.float64):
        example.train_step(model, optimizer, x, target)

    assert ranks[0].keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-10, atol=1e-12)
        assert not torch.equal(value, initial[name]), name
