"""Data-parallel training of cuda_rnn.torch.LSTM with torch.distributed (DistributedDataParallel).

Each process holds a replica of a small sequence regressor (cuda_rnn.torch.LSTM + a linear head)
and trains on its share of every batch; DDP all-reduces the gradients that cuda_rnn's BPTT
produced, so every replica takes the same optimizer step. On the CPU the processes talk over
gloo; with ``--device cuda`` each process drives one GPU over NCCL.

    python examples/ddp_train.py --world-size 2                 # CPU, gloo
    python examples/ddp_train.py --world-size 4 --device cuda   # one GPU per process
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cuda_rnn.torch import LSTM

INPUT_SIZE, HIDDEN_SIZE, STEPS_PER_SEQUENCE = 4, 16, 12


class Regressor(nn.Module):
    """Reads a sequence and predicts, at every step, the running sum of its first feature."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.rnn = LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, batch_first=True, dtype=dtype)
        self.head = nn.Linear(HIDDEN_SIZE, 1, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y).squeeze(-1)


def build_model(seed: int, dtype: torch.dtype) -> Regressor:
    """The same initial weights in every process for a given seed."""
    torch.manual_seed(seed)
    return Regressor(dtype)


def make_batches(seed: int, steps: int, batch_size: int,
                 dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` global batches (inputs, running-sum targets), identical in every process."""
    g = torch.Generator().manual_seed(seed + 1)
    batches = []
    for _ in range(steps):
        x = torch.randn(batch_size, STEPS_PER_SEQUENCE, INPUT_SIZE, generator=g, dtype=dtype)
        batches.append((x, x[..., 0].cumsum(dim=1) / STEPS_PER_SEQUENCE**0.5))
    return batches


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               target: torch.Tensor) -> float:
    """One optimizer step on the mean squared error; returns the loss."""
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
    return loss.item()


def worker(rank: int, args: argparse.Namespace) -> None:
    """One process: join the group, train on its slice of every batch, save its weights."""
    use_cuda = args.device == "cuda"
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=args.init_method,
                            rank=rank, world_size=args.world_size)
    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dtype = getattr(torch, args.dtype)
    model = build_model(args.seed, dtype).to(device)
    ddp = DistributedDataParallel(model, device_ids=[rank] if use_cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr)
    share = args.batch_size // args.world_size
    for step, (x, target) in enumerate(make_batches(args.seed, args.steps, args.batch_size,
                                                    dtype)):
        mine = slice(rank * share, (rank + 1) * share)
        loss = train_step(ddp, optimizer, x[mine].to(device), target[mine].to(device))
        if rank == 0 and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss (rank 0 share) {loss:.5f}", flush=True)
    if args.save is not None:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()},
                   Path(args.save) / f"rank{rank}.pt")
    # Leave together: a rank that tears its connections down while the other still uses them
    # can abort that one (gloo, "terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world-size", type=int, default=2, help="number of processes")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (all processes)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save", default=None, help="folder to write rank{r}.pt state_dicts into")
    args = p.parse_args(argv)
    if args.batch_size % args.world_size:
        p.error(f"--batch-size: expected a multiple of --world-size={args.world_size}, "
                f"got {args.batch_size}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The processes meet through a file, not a TCP port: a port picked free here could be
    # taken by another process before rank 0 listens on it.
    with tempfile.TemporaryDirectory() as folder:
        args.init_method = f"file://{Path(folder) / 'rendezvous'}"
        mp.spawn(worker, args=(args,), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
