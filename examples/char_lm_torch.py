"""A character language model trained in a plain PyTorch loop, with cuda_rnn.torch.LSTM in the
place of torch.nn.LSTM (the only line that differs from the all-PyTorch version).

    python examples/char_lm_torch.py --text input.txt --steps 2000
    python examples/char_lm_torch.py --text input.txt --device cuda --amp

Every ``--log-every`` steps it prints the training loss in nats per character; at the end it
samples ``--sample`` characters from the model.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from cuda_rnn.torch import LSTM


class CharLM(nn.Module):
    """Embedding -> LSTM stack -> logits over the vocabulary."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = LSTM(embed, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        y, state = self.rnn(self.embed(tokens), state)
        return self.out(y), state


def random_windows(data: torch.Tensor, batch: int, length: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows of ``length`` characters and the same windows shifted by one."""
    starts = torch.randint(len(data) - length - 1, (batch,), generator=generator)
    idx = starts[:, None] + torch.arange(length + 1)
    windows = data[idx]
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def sample(model: CharLM, first: int, n: int, device: torch.device,
           generator: torch.Generator) -> list[int]:
    """Draw ``n`` characters one at a time, carrying the LSTM state between them."""
    model.eval()
    token = torch.tensor([[first]], device=device)
    state, out = None, []
    for _ in range(n):
        logits, state = model(token, state)
        probs = torch.softmax(logits[0, -1].float(), dim=-1).cpu()
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(nxt)
        token = torch.tensor([[nxt]], device=device)
    model.train()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", type=Path, required=True, help="a UTF-8 text file to learn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="autocast to float16 on CUDA")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=1.0, help="max global gradient norm")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--sample", type=int, default=300, help="characters to sample at the end")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    text = args.text.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    device = torch.device(args.device)
    model = CharLM(len(chars), args.embed, args.hidden, args.layers, args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    use_amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    for step in range(args.steps):
        inputs, targets = (t.to(device) for t in
                           random_windows(data, args.batch_size, args.seq_len, generator))
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits, _ = model(inputs)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)).float(),
                                               targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        scaler.step(optimizer)
        scaler.update()
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f} nats/char", flush=True)
    drawn = sample(model, index[text[0]], args.sample, device, generator)
    print(text[0] + "".join(chars[i] for i in drawn))


if __name__ == "__main__":
    main()
