"""cuda_rnn.torch modules keep torch.nn.LSTM / GRU / RNN's autograd contract on the CPU.

Each behaviour is run on the torch.nn module and on its twin holding the same weights: the
same exception type, or the same values (float64, 1e-10).
"""
from __future__ import annotations

import copy
import inspect
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cuda_rnn.layers as layers  # noqa: E402
from cuda_rnn import torch as crt  # noqa: E402

PAIRS = {
    "lstm": (torch.nn.LSTM, crt.LSTM),
    "gru": (torch.nn.GRU, crt.GRU),
    "rnn": (torch.nn.RNN, crt.RNN),
}
KINDS = list(PAIRS)
TOL = {"rtol": 1e-10, "atol": 1e-10}
# torch 2.13 deprecates the TorchScript entry points that the scripting tests call.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")


def _pair(kind: str, rng: np.random.Generator, dtype: torch.dtype = torch.float64, **options):
    torch.manual_seed(int(rng.integers(2**31)))
    ref = PAIRS[kind][0](3, 5, **options).to(dtype)
    ours = PAIRS[kind][1](3, 5, **options).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _randn(rng: np.random.Generator, *shape: int, dtype: torch.dtype = torch.float64,
           grad: bool = True) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape)).to(dtype).requires_grad_(grad)


def _inputs(kind: str, module, rng: np.random.Generator, B: int = 3, T: int = 5,
            dtype: torch.dtype = torch.float64):
    LD = module.num_layers * (2 if module.bidirectional else 1)
    x = _randn(rng, *((B, T, 3) if module.batch_first else (T, B, 3)), dtype=dtype)
    h0 = _randn(rng, LD, B, 5, dtype=dtype)
    return x, ((h0, _randn(rng, LD, B, 5, dtype=dtype)) if kind == "lstm" else h0)


def _states(hx) -> list[torch.Tensor]:
    return list(hx) if isinstance(hx, tuple) else [hx]


def _loss(y, state, weights) -> torch.Tensor:
    return sum((o * w).sum() for o, w in zip([y, *_states(state)], weights))


def _loss_weights(kind: str, module, rng, B: int = 3, T: int = 5) -> list[torch.Tensor]:
    D = 2 if module.bidirectional else 1
    LD = module.num_layers * D
    y = (B, T, D * 5) if module.batch_first else (T, B, D * 5)
    shapes = [y] + [(LD, B, 5)] * (2 if kind == "lstm" else 1)
    return [_randn(rng, *s, grad=False) for s in shapes]


def _raised(fn) -> BaseException | None:
    """The exception ``fn()`` raises, or None."""
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - the caller compares it with torch's
        return error
    return None


def _clone_leaves(x, hx):
    return (x.detach().clone().requires_grad_(),
            type(hx)(s.detach().clone().requires_grad_() for s in hx) if isinstance(hx, tuple)
            else hx.detach().clone().requires_grad_())


# ----------------------------------------------------------------- in-place edits
EDITS = [(kind, edit) for kind in KINDS
         for edit in ["weight_hh_l0", "weight_ih_l0", "bias_hh_l0", "x", "h0", "c0"]
         if edit != "c0" or kind == "lstm"]


@pytest.mark.parametrize("kind,edit", EDITS, ids=[f"{k}-{e}" for k, e in EDITS])
def test_in_place_edit_before_backward_raises_like_torch(kind: str, edit: str,
                                                         rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng)
    x, hx = _inputs(kind, ours, rng)
    weights = _loss_weights(kind, ours, rng)

    def run(module):
        x_, hx_ = _clone_leaves(x, hx)
        y, state = module(x_, hx_)
        target = {"x": x_, "h0": _states(hx_)[0], "c0": _states(hx_)[-1]}.get(edit)
        with torch.no_grad():
            (getattr(module, edit) if target is None else target).add_(0.5)
        _loss(y, state, weights).backward()

    error_ref, error = _raised(lambda: run(ref)), _raised(lambda: run(ours))
    if edit.startswith("bias"):
        # Neither reads a bias in backward (its gradient does not depend on it).
        assert error_ref is None and error is None
        for a, b in zip(ours.parameters(), ref.parameters()):
            torch.testing.assert_close(a.grad, b.grad, **TOL)
    else:
        assert type(error) is type(error_ref) is RuntimeError
        assert "modified by an inplace operation" in str(error)


def test_in_place_edit_after_backward_is_allowed(rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng)
    x, hx = _inputs("lstm", ours, rng)
    weights = _loss_weights("lstm", ours, rng)
    for module in (ref, ours):
        _loss(*module(x, hx), weights).backward()
        with torch.no_grad():
            module.weight_hh_l0.add_(0.5)
    torch.testing.assert_close(ours.weight_hh_l0.grad, ref.weight_hh_l0.grad, **TOL)


# ----------------------------------------------------------------- a second backward
@pytest.mark.parametrize("kind", KINDS)
def test_second_backward_without_retain_graph_raises_like_torch(
        kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng)
    x, hx = _inputs(kind, ours, rng)

    def run(module):
        y, _ = module(x, hx)
        y.sum().backward()
        y.sum().backward()

    error_ref, error = _raised(lambda: run(ref)), _raised(lambda: run(ours))
    assert type(error) is type(error_ref) is RuntimeError
    for e in (error_ref, error):
        assert "Trying to backward through the graph a second time" in str(e)


@pytest.mark.parametrize("kind", KINDS)
def test_second_backward_with_retain_graph_doubles_grads_like_torch(
        kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, num_layers=2, bidirectional=True)
    x, hx = _inputs(kind, ours, rng)
    weights = _loss_weights(kind, ours, rng)
    leaves = {}
    for name, module in (("ref", ref), ("ours", ours)):
        x_, hx_ = _clone_leaves(x, hx)
        loss = _loss(*module(x_, hx_), weights)
        loss.backward(retain_graph=True)
        once = [p.grad.clone() for p in module.parameters()]
        loss.backward()
        leaves[name] = [x_.grad, *(s.grad for s in _states(hx_))]
        for p, g in zip(module.parameters(), once):
            torch.testing.assert_close(p.grad, 2 * g, rtol=1e-12, atol=1e-12)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **TOL)
    for a, b in zip(leaves["ours"], leaves["ref"]):
        torch.testing.assert_close(a, b, **TOL)


# ----------------------------------------------------------------- higher order, torch.func
@pytest.mark.parametrize("kind", KINDS)
def test_torch_func_grad_over_functional_call_matches_torch(
        kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, num_layers=2)
    x, hx = _inputs(kind, ours, rng)
    weights = _loss_weights(kind, ours, rng)

    def grads(module):
        def loss(params, x_):
            y, state = torch.func.functional_call(module, params, (x_, hx))
            return _loss(y, state, weights)

        params = {k: v.detach() for k, v in module.named_parameters()}
        return torch.func.grad(loss, argnums=(0, 1))(params, x.detach())

    (p_ref, dx_ref), (p, dx) = grads(ref), grads(ours)
    assert list(p) == list(p_ref)
    for name in p_ref:
        torch.testing.assert_close(p[name], p_ref[name], **TOL, msg=name)
    torch.testing.assert_close(dx, dx_ref, **TOL)


@pytest.mark.parametrize("loss_kind", ["linear", "square"])
@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_raises_that_it_is_unsupported(
        kind: str, loss_kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng)
    x, hx = _inputs(kind, ours, rng)
    grads = {}
    for name, module in (("ref", ref), ("ours", ours)):
        y, _ = module(x, hx)
        loss = y.sum() if loss_kind == "linear" else y.square().sum()
        grads[name] = torch.autograd.grad(loss, module.weight_hh_l0, create_graph=True)[0]
    # The first-order gradient made with create_graph=True is still torch's.
    torch.testing.assert_close(grads["ours"], grads["ref"], **TOL)
    grads["ref"].square().sum().backward()  # torch.nn supports it
    with pytest.raises(NotImplementedError, match="second-order gradients .* are not supported"):
        grads["ours"].square().sum().backward()


def test_nested_torch_func_grad_raises_that_it_is_unsupported(rng: np.random.Generator) -> None:
    _, ours = _pair("gru", rng)
    x, _ = _inputs("gru", ours, rng)
    w = ours.weight_hh_l0.detach()

    def loss(w_):
        y, _ = torch.func.functional_call(ours, {"weight_hh_l0": w_}, (x.detach(),))
        return y.square().sum()

    with pytest.raises(NotImplementedError, match="second-order gradients .* not supported"):
        torch.func.grad(lambda w_: torch.func.grad(loss)(w_).sum())(w)


@pytest.mark.parametrize("transform,match", [
    (lambda f, w: torch.func.vmap(f)(w[None]), "torch.func.vmap .* is not supported"),
    (lambda f, w: torch.func.jvp(f, (w,), (torch.ones_like(w),)),
     "forward-mode AD .* is not supported"),
], ids=["vmap", "jvp"])
def test_other_transforms_raise_that_they_are_unsupported(transform, match: str,
                                                          rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng)
    x, _ = _inputs("lstm", ours, rng)

    def f(w_):
        return torch.func.functional_call(ours, {"weight_hh_l0": w_}, (x.detach(),))[0].sum()

    with pytest.raises(NotImplementedError, match=match):
        transform(f, ours.weight_hh_l0.detach())


# ----------------------------------------------------------------- TorchScript
@pytest.mark.parametrize("kind", KINDS)
def test_jit_script_refuses_with_a_clear_error(kind: str, rng: np.random.Generator) -> None:
    _, ours = _pair(kind, rng)
    for module in (ours, torch.nn.Sequential(ours)):
        with pytest.raises(RuntimeError, match=r"LSTM|GRU|RNN cannot be compiled by "
                                               r"torch\.jit\.script: .* torch\.compile runs it"):
            torch.jit.script(module)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_trace_runs_but_cannot_be_saved(rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng)
    x, hx = _inputs("lstm", ours, rng)
    traced = torch.jit.trace(ours, (x, hx), check_trace=False)
    y, (h, c) = traced(x, hx)
    torch.testing.assert_close(y, ref(x, hx)[0], **TOL)
    with pytest.raises(RuntimeError, match="Could not export Python function call "
                                           "'RecurrentFunction'"):
        torch.jit.save(traced, io.BytesIO())


def test_torch_compile_matches_eager(rng: np.random.Generator) -> None:
    ref, ours = _pair("gru", rng, num_layers=2)
    x, hx = _inputs("gru", ours, rng)
    weights = _loss_weights("gru", ours, rng)
    _loss(*torch.compile(ours)(x, hx), weights).backward()
    _loss(*ref(x, hx), weights).backward()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **TOL)


# ----------------------------------------------------------------- empty batch
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "state"])
@pytest.mark.parametrize("options", [{}, {"batch_first": True, "num_layers": 2,
                                          "bidirectional": True}], ids=["default", "bf-2l-bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_empty_batch_returns_empty_outputs_like_torch(kind: str, options: dict, with_state: bool,
                                                      rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, **options)
    x, hx = _inputs(kind, ours, rng, B=0)
    results = {}
    for name, module in (("ref", ref), ("ours", ours)):
        x_, hx_ = _clone_leaves(x, hx)
        module.zero_grad()
        y, state = module(x_, hx_ if with_state else None)
        (y.sum() + sum(s.sum() for s in _states(state))).backward()
        results[name] = (y, _states(state), x_.grad,
                         [s.grad for s in _states(hx_)] if with_state else None,
                         [p.grad for p in module.parameters()])
    (y_r, s_r, dx_r, dh_r, dp_r), (y, s, dx, dh, dp) = results["ref"], results["ours"]
    assert y.shape == y_r.shape and y.dtype == y_r.dtype
    assert [t.shape for t in s] == [t.shape for t in s_r]
    assert dx.shape == dx_r.shape
    if dh_r is not None:
        assert [t.shape for t in dh] == [t.shape for t in dh_r]
    for a, b in zip(dp, dp_r):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # zeros, as torch's


def test_empty_batch_checks_the_state_shape(rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng)
    x, (h0, c0) = _inputs("lstm", ours, rng, B=0)
    with pytest.raises(ValueError, match=r"c0: expected shape \(1, 0, 5\), got \(2, 0, 5\)"):
        ours(x, (h0, torch.cat([c0, c0])))


# ----------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_modules_compute_on_the_cpu(kind: str, dtype: torch.dtype,
                                                   rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, dtype=dtype)
    x, hx = _inputs(kind, ours, rng, dtype=dtype)
    weights = _loss_weights(kind, ours, rng)
    y, state = ours(x, hx)
    assert y.dtype == dtype and all(s.dtype == dtype for s in _states(state))
    _loss(y.double(), tuple(s.double() for s in _states(state)), weights).backward()
    # Exact: torch.nn in float64 on the same (rounded) weights and inputs.
    exact = PAIRS[kind][0](3, 5).double()
    exact.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    x64, hx64 = _clone_leaves(x.detach().double(), type(hx)(s.detach().double() for s in hx)
                              if isinstance(hx, tuple) else hx.detach().double())
    y64, state64 = exact(x64, hx64)
    _loss(y64, state64, weights).backward()
    # Computed in float32 and rounded once: within the half type's rounding of the exact.
    eps = torch.finfo(dtype).eps
    for a, b in zip([y, *_states(state)], [y64, *_states(state64)]):
        torch.testing.assert_close(a.double(), b.detach(), rtol=eps, atol=eps)
    for (name, p), p64 in zip(ours.named_parameters(), exact.parameters()):
        assert p.grad.dtype == dtype
        torch.testing.assert_close(p.grad.double(), p64.grad, rtol=2 * eps,
                                   atol=2 * eps * p64.grad.abs().max().item(), msg=name)
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=2 * eps,
                               atol=2 * eps * x64.grad.abs().max().item())
    # torch.nn's own half-precision module, which rounds every step, agrees loosely.
    torch.testing.assert_close(y, ref(x, hx)[0].detach(), rtol=0.05, atol=0.05)


STATES = [("lstm", "h0"), ("lstm", "c0"), ("gru", "h0"), ("rnn", "h0")]


@pytest.mark.parametrize("kind,state", STATES, ids=[f"{k}-{s}" for k, s in STATES])
def test_state_of_another_dtype_raises_like_torch(kind: str, state: str,
                                                  rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, dtype=torch.float32)
    x, hx = _inputs(kind, ours, rng, dtype=torch.float32)
    states = _states(hx)
    index = 0 if state == "h0" else 1
    states[index] = states[index].double()
    hx = tuple(states) if kind == "lstm" else states[0]
    error_ref, error = _raised(lambda: ref(x, hx)), _raised(lambda: ours(x, hx))
    assert isinstance(error_ref, RuntimeError)
    assert isinstance(error, type(error_ref)) and isinstance(error, ValueError)
    assert str(error) == (f"{state}: expected dtype torch.float32 (the weights' dtype), got "
                          f"torch.float64; convert the state or the module")


def test_input_of_another_dtype_raises_like_torch(rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng, dtype=torch.float32)
    x = _randn(rng, 5, 3, 3)
    error_ref, error = _raised(lambda: ref(x)), _raised(lambda: ours(x))
    assert type(error) is type(error_ref) is ValueError
    assert "input: expected dtype torch.float32" in str(error)


# ----------------------------------------------------------------- algo=
def _constructed_algos(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[str]:
    """Record the ``algo`` of every cuda_rnn layer of class ``cls`` built from now on."""
    seen: list[str] = []
    original = cls.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.algo)

    monkeypatch.setattr(cls, "__init__", spy)
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_algo_defaults_to_the_layers_default(kind: str) -> None:
    layer_cls = PAIRS[kind][1]._layer_cls
    default = inspect.signature(layer_cls).parameters["algo"].default
    module = PAIRS[kind][1](3, 5)
    assert module.algo == default == layer_cls(3, 5, device="cpu").algo
    assert "algo" not in repr(module)


@pytest.mark.parametrize("kind", KINDS)
def test_algo_is_stored_and_passed_to_the_layer(kind: str, rng: np.random.Generator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ref, _ = _pair(kind, rng)
    module = PAIRS[kind][1](3, 5, algo="graph").double()
    module.load_state_dict(ref.state_dict())
    assert module.algo == "graph" and "algo='graph'" in repr(module)
    assert copy.deepcopy(module).algo == "graph"
    seen = _constructed_algos(monkeypatch, {"lstm": layers.LSTM, "gru": layers.GRU,
                                            "rnn": layers.RNN}[kind])
    x, hx = _inputs(kind, module, rng)
    y, _ = module(x, hx)
    module.algo = "persistent"
    y2, _ = module(x, hx)
    assert seen == ["graph", "persistent"]
    # Ignored on the CPU: the same function as torch.nn's.
    for out in (y, y2):
        torch.testing.assert_close(out, ref(x, hx)[0], **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_algo_is_rejected(kind: str) -> None:
    with pytest.raises(ValueError, match=r"algo: expected one of \(.*'auto'\), got 'fastest'"):
        PAIRS[kind][1](3, 5, algo="fastest")
    module = PAIRS[kind][1](3, 5)
    with pytest.raises(ValueError, match=r"algo: expected one of .* got 'cudnn'"):
        module.algo = "cudnn"
    assert module.algo == inspect.signature(module._layer_cls).parameters["algo"].default
