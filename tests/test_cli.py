"""The cuda-rnn command: bad arguments give one line and status 2; each subcommand runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cuda_rnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seq-len", "6", "--hidden", "6", "--batch", "4", "--steps", "3", "--no-progress",
        "--no-plots"]


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--cell", "transformer"], "--cell: expected a comma-separated list"),
    (["train", "--hidden", "0"], "--hidden: expected a positive integer, got '0'"),
    (["train", "--tbptt", "5,x"], "--tbptt: expected K1 or K1,K2"),
    (["train", "--task", "sorting"], "--task: invalid choice: 'sorting'"),
    (["train", "--lr", "nan"], "--lr: expected a positive number, got 'nan'"),
    (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["vanish", "--seq-len", "-3"], "--seq-len: expected a positive integer"),
    ([], "the following arguments are required: command"),
])
def test_bad_arguments_give_one_line_and_status_2(
    capsys: pytest.CaptureFixture, argv: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and err.startswith("cuda-rnn")


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--clip", "-1"], "--clip: expected a number >= 0 (0: no clipping), got -1.0"),
    (["train", "--task", "digits", "--seq-len", "5"], "--seq-len: expected 8"),
    (["train", "--task", "charlm", "--text", "/nonexistent/t.txt"],
     "path: expected an existing UTF-8 text file"),
    (["train", "--task", "charlm"], "--text: expected a UTF-8 text file for --task charlm"),
    (["train", "--cell", "lstm", "--resume"], "--resume: expected a run in"),
    (["train", "--device", "cuda"], None),
    (["train", "--dtype", "float16", "--device", "cpu"], "dtype: expected one of"),
    (["sample", "--out", "/nonexistent"], "--out: expected a run folder with checkpoint.npz"),
])
def test_invalid_values_give_one_line_and_status_2(
    capsys: pytest.CaptureFixture, tmp_path: Path, argv: list[str], fragment: str | None
) -> None:
    if "--device" in argv and "cuda" in argv:
        from cuda_rnn.backend import cuda_available

        if cuda_available():
            pytest.skip("a GPU is present, so --device cuda is valid here")
        fragment = "device='cuda' is not available"
    status = main(argv + ["--out", str(tmp_path / "run")] * ("--out" not in argv) + TINY
                  * (argv[0] == "train"))
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_train_writes_metrics_checkpoint_and_table(capsys: pytest.CaptureFixture,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--cell", "lstm,rnn-sigmoid", "--out", str(out), *TINY[:-1]]) == 0
    table = capsys.readouterr().out
    assert "lstm" in table and "rnn-sigmoid" in table and "0.1667" in table
    for cell in ("lstm", "rnn-sigmoid"):
        metrics = json.loads((out / cell / "metrics.json").read_text())
        assert {"task", "cell", "hidden", "seq_len", "steps", "device", "final_train_loss",
                "test_loss", "baseline", "wall_s"} <= set(metrics)
        assert metrics["cell"] == cell and metrics["steps"] == 3 and metrics["seq_len"] == 6
        assert metrics["device"] == "cpu" and np.isfinite(metrics["test_loss"])
        assert (out / cell / "checkpoint.npz").exists() and (out / cell / "loss.png").exists()
    assert (out / "loss.png").exists()


def test_train_then_resume_extends_the_run(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    args = ["train", "--cell", "gru", "--task", "copy", "--out", out, "--tbptt", "8,10", *TINY]
    assert main(args) == 0
    longer = [a if a != "3" else "5" for a in args]
    assert main(longer + ["--resume"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["resumed_from_step"] == 3
    assert metrics["tbptt"] == [8, 10] and metrics["seq_len"] == 6
    assert metrics["test_perplexity"] == pytest.approx(np.exp(metrics["test_loss"]))


def test_charlm_train_and_sample(capsys: pytest.CaptureFixture, tmp_path: Path,
                                 rng: np.random.Generator) -> None:
    text = tmp_path / "t.txt"
    text.write_text("".join(rng.choice(list("to be or not\n"), 2000)), encoding="utf-8")
    out = str(tmp_path / "lm")
    assert main(["train", "--task", "charlm", "--text", str(text), "--cell", "lstm",
                 "--embed", "--out", out, *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", "--out", out, "--prime", "to", "--length", "30"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("to") and len(sample) == 2 + 30 + 1
    assert set(sample) <= set("to be or not\n")
    assert main(["sample", "--out", out, "--prime", "XYZ"]) == 2
    assert "prime: expected characters of the vocabulary" in capsys.readouterr().err


def test_sample_rejects_a_non_charlm_run(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = str(tmp_path / "add")
    assert main(["train", "--cell", "lstm", "--out", out, *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", "--out", out]) == 2
    assert "--out: expected a charlm run, got an adding run" in capsys.readouterr().err


def test_diverging_run_exits_1_with_a_clear_message(capsys: pytest.CaptureFixture,
                                                    tmp_path: Path) -> None:
    status = main(["train", "--cell", "rnn-relu", "--optimizer", "sgd", "--lr", "1e30",
                   "--momentum", "0", "--clip", "0", "--out", str(tmp_path / "r"), *TINY])
    assert status == 1
    err = capsys.readouterr().err
    assert "training diverged at step" in err and err.count("\n") == 1


def test_vanish_and_gradcheck(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = tmp_path / "v"
    assert main(["vanish", "--seq-len", "12", "--hidden", "8", "--batch", "4",
                 "--out", str(out)]) == 0
    record = json.loads((out / "vanish.json").read_text())
    cells = ("rnn-sigmoid", "rnn-tanh", "lstm", "lstm-carousel", "gru")
    assert set(record["norms"]) == {f"{c} init" for c in cells}
    assert all(len(n) == 12 for n in record["norms"].values())
    norms = {c: np.asarray(record["norms"][f"{c} init"]) for c in cells}
    # The carousel carries dL/dc back unchanged: at initialisation its gradient at t = 0 is
    # a larger share of the last step's than the forget-gated LSTM's or the tanh RNN's.
    keep = {c: n[0] / n[-1] for c, n in norms.items()}
    assert keep["lstm-carousel"] > 3 * max(keep["lstm"], keep["rnn-tanh"])
    assert (out / "vanish.png").exists()
    capsys.readouterr()
    assert main(["gradcheck", "--cell", "lstm,rnn-tanh,lstm-carousel", "--seq-len", "3",
                 "--hidden", "3", "--batch", "2", "--layers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("lstm ") and lines[3].startswith("lstm-carousel ")
    assert all(line.endswith("ok") for line in lines[1:4])


@pytest.mark.parametrize("flags, options", [
    (["--peephole"], {"peephole": True}),
    (["--no-forget-gate", "--proj-size", "3"], {"forget_gate": False, "proj_size": 3}),
    (["--forget-bias", "1.5"], {"forget_bias": 1.5}),
    (["--layer-norm", "--peephole"], {"layer_norm": True, "peephole": True}),
])
def test_train_lstm_variant_flags_reach_the_lstm_only(flags: list, options: dict,
                                                       capsys: pytest.CaptureFixture,
                                                       tmp_path: Path) -> None:
    from cuda_rnn.checkpoint import load_checkpoint

    out = tmp_path / "r"
    assert main(["train", "--cell", "lstm,rnn-tanh", "--out", str(out), *flags, *TINY]) == 0
    lstm = load_checkpoint(out / "lstm" / "checkpoint.npz")
    rnn = load_checkpoint(out / "rnn-tanh" / "checkpoint.npz")
    assert lstm.meta["config"]["model"]["options"] == options
    assert rnn.meta["config"]["model"]["options"] == {}
    metrics = json.loads((out / "lstm" / "metrics.json").read_text())
    assert metrics["options"] == options
    assert metrics["evals"][-1] == [3, metrics["test_loss"]]
    shapes = {k: v.shape for k, v in lstm.params.items()}
    H = metrics["hidden"]
    G = 3 if options.get("forget_gate") is False else 4
    assert shapes["rnn.weight_ih_l0"][0] == G * H
    assert ("rnn.weight_ch_l0" in shapes) == ("peephole" in options)
    if "proj_size" in options:
        assert shapes["rnn.weight_hr_l0"] == (3, H) and shapes["head.weight"][1] == 3
    if "forget_bias" in options:
        # Three Adam steps of lr 3e-3 move a bias by at most about 0.01.
        np.testing.assert_allclose(lstm.params["rnn.bias_ih_l0"][H:2 * H], 1.5, atol=0.02)
        np.testing.assert_allclose(lstm.params["rnn.bias_hh_l0"][H:2 * H], 0.0, atol=0.02)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--steps", "5"]) == 0
    assert "resumed from step" in capsys.readouterr().out


def test_train_lstm_flags_without_an_lstm_are_a_usage_error(capsys: pytest.CaptureFixture,
                                                            tmp_path: Path) -> None:
    assert main(["train", "--cell", "gru", "--no-forget-gate", "--out", str(tmp_path / "r"),
                 *TINY]) == 2
    assert ("--no-forget-gate: an LSTM option; expected --cell to include lstm, got gru"
            in capsys.readouterr().err)


def test_python_dash_m_entry_point_reports_usage_errors(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "cuda_rnn", "train", "--batch", "-1"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "cuda-rnn train: error: argument --batch: expected a positive integer, got '-1'"
    ]


def test_train_regulariser_flags_reach_every_cell(capsys: pytest.CaptureFixture,
                                                  tmp_path: Path) -> None:
    from cuda_rnn.checkpoint import load_checkpoint

    out = tmp_path / "r"
    flags = ["--zoneout", "0.1", "--recurrent-dropout", "0.2", "--weight-dropout", "0.3",
             "--zoneout-cell", "0.05"]
    assert main(["train", "--cell", "lstm,gru", "--out", str(out), *flags, *TINY]) == 0
    common = {"zoneout": 0.1, "recurrent_dropout": 0.2, "weight_dropout": 0.3}
    lstm = load_checkpoint(out / "lstm" / "checkpoint.npz").meta["config"]["model"]["options"]
    gru = load_checkpoint(out / "gru" / "checkpoint.npz").meta["config"]["model"]["options"]
    assert lstm == {**common, "zoneout_cell": 0.05} and gru == common
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--zoneout", "0.2"]) == 2
    assert "--zoneout 0.2 (the run has 0.1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--cell", "gru", "--zoneout", "1", "--out", str(tmp_path / "x"), *TINY])
    assert exit_info.value.code == 2
    assert "--zoneout: expected a number in [0, 1), got '1'" in capsys.readouterr().err
