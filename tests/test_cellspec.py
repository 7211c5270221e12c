"""The cell descriptions against what they describe: the kernels' C++ signatures, the layers'
parameters and the options they are built from."""
from __future__ import annotations

import re

import pytest

import cuda_rnn as cr
from cuda_rnn.cuda import loader
from cuda_rnn.cellspec import (
    CELLS,
    MODEL_CELLS,
    NONLINEARITIES,
    SPECS,
    cell_spec,
    kernel_variants,
    model_cell_spec,
)

ALL_SPECS = [cell_spec("rnn", nonlinearity=n) for n in NONLINEARITIES] + [
    SPECS["lstm"], SPECS["gru"], cell_spec("lstm", peephole=True, forget_gate=False),
    cell_spec("lstm", layer_norm=True, proj_size=2)]


def _signature(source: str, kernel: str) -> list[tuple[str, bool]]:
    """(name, is_pointer) of each parameter of ``kernel`` in a CUDA source."""
    match = re.search(rf"\b{kernel}\s*\(([^)]*)\)", source)
    assert match, f"{kernel} not found"
    params = []
    for p in match.group(1).split(","):
        name = re.findall(r"[A-Za-z_]\w*", p)[-1]
        params.append((name, "*" in p))
    return params


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: f"{s.cell}-{s.variant}")
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_pointwise_arguments_are_the_kernel_signature(spec, direction: str) -> None:
    params = _signature(loader.read_source_file(spec.step_source),
                        spec.kernel_name(direction, spec.step_kind))
    pointers = [n for n, is_pointer in params if is_pointer]
    scalars = [n for n, is_pointer in params if not is_pointer]
    assert tuple(pointers) == spec.args(direction, spec.step_kind)
    # t, B, H, the extra ints, then zoneout's probability for each mask (ph, pc)
    expectations = [f"p{name[1:]}" for name in spec.zoneout]
    assert scalars[:3] == ["t", "B", "H"] and len(scalars) == 3 + len(spec.extra_args) + len(
        expectations)
    assert scalars[3 + len(spec.extra_args):] == expectations


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_persistent_arguments_match_the_kernel_signature(cell: str, direction: str) -> None:
    spec = SPECS[cell]
    source = loader.inline_includes(f"{cell}_persistent.cuh")
    params = _signature(source, spec.kernel_name(direction, "persistent"))
    pointers = [n for n, is_pointer in params if is_pointer]
    args = spec.args(direction, "persistent")
    assert len(pointers) == len(args)
    # dL/d(state)_0 leaves in the buffer dL/d(state)_T entered: the aliases are the last
    # arguments, named as in the kernel.
    if direction == "backward":
        tail = tuple(spec.aliases)
        assert tuple(pointers[-len(tail):]) == tail == args[-len(tail):]
        assert all(spec.buffer(a) is spec.buffer(spec.aliases[a]) for a in tail)


def test_rnn_has_no_persistent_kernel() -> None:
    with pytest.raises(ValueError, match="kernel: expected one of"):
        SPECS["rnn"].args("forward", "persistent")


@pytest.mark.parametrize("cls,gates", [(cr.LSTM, 4), (cr.GRU, 3), (cr.RNN, 1)])
def test_layer_parameters_are_the_spec_shapes(cls: type, gates: int) -> None:
    layer = cls(3, 5, num_layers=2, bidirectional=True, device="cpu")
    assert layer.spec.gates == gates
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == layer.spec.layer_parameter_shapes(3, 5, 2, 2, True)
    assert shapes["weight_ih_l1_reverse"] == (gates * 5, 10)
    no_bias = cls(3, 5, bias=False, device="cpu")
    assert sorted(no_bias.state_dict()) == ["weight_hh_l0", "weight_ih_l0"]


def test_cells_read_the_same_spec_as_layers() -> None:
    cell = cr.RNNCell(3, 4, nonlinearity="relu", device="cpu")
    layer = cr.RNN(3, 4, nonlinearity="relu", device="cpu")
    assert cell.spec is layer.spec
    assert cell.nonlinearity == layer.nonlinearity == "relu"
    assert cr.LSTMCell(2, 3, device="cpu").spec.states == ("h", "c")
    assert cr.LSTM(2, 3, device="cpu").spec.initial_state_names == ("h0", "c0")


def test_model_cell_names_and_option_errors() -> None:
    assert [model_cell_spec(n).cell for n in MODEL_CELLS] == ["lstm", "gru", "rnn", "rnn",
                                                                "rnn"]
    assert model_cell_spec("rnn-sigmoid").options.nonlinearity == "sigmoid"
    assert set(SPECS) == set(CELLS)
    with pytest.raises(ValueError, match=r"cell: expected one of .* got 'lstm-relu'"):
        model_cell_spec("lstm-relu")
    with pytest.raises(ValueError, match=r"cell: expected one of .* got 'tree'"):
        cell_spec("tree")
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of \('tanh',\), got"):
        cell_spec("lstm", nonlinearity="relu")
    with pytest.raises(TypeError, match="unexpected keyword"):
        cell_spec("lstm", gate_count=3)


def test_lstm_kernel_options_name_instantiations_and_persistent_support() -> None:
    plain = cell_spec("lstm")
    assert (plain.template_arguments, plain.variant, plain.persistent) == (
        "false, true, false", "", True)
    assert plain.unsupported_persistent == ""
    both = cell_spec("lstm", peephole=True, forget_gate=False)
    assert both.template_arguments == "true, false, false"
    assert both.variant == "peephole, no forget gate"
    assert not both.persistent
    assert both.unsupported_persistent.endswith("not peephole=True, forget_gate=False")
    projected = cell_spec("lstm", proj_size=3)
    assert projected.unsupported_persistent.endswith("not proj_size=3")
    assert (projected.template_arguments, projected.variant) == ("false, true, true",
                                                                 "proj_size=3")
    assert projected.args("forward", "projection") == ("h", "y", "lengths", "zh")
    assert projected.args("backward", "projection") == ("dy", "dh", "dhr", "lengths", "zh")
    assert projected.pointwise_slots == {"y": "m", "dh": "dm"}
    assert "m" in projected.saved and "m" in projected.names("forward")
    assert {"dm", "dhr", "w_hr"} <= set(projected.names("backward"))
    with pytest.raises(ValueError, match="kernel: expected one of"):
        plain.args("forward", "projection")
    assert both.args("forward", "pointwise")[:3] == ("xp", "hp", "w_ch")
    assert both.args("backward", "pointwise")[0] == "w_ch"
    with pytest.raises(ValueError, match="kernel: expected one of"):
        both.args("forward", "persistent")
    flags = ("true", "false")
    assert set(kernel_variants("lstm")) == {f"{a}, {b}, {c}" for a in flags for b in flags
                                            for c in flags}
    assert kernel_variants("gru") == kernel_variants("rnn") == ("",)
    assert cell_spec("gru").template_arguments == ""


def test_zoneout_masks_are_optional_kernel_arguments() -> None:
    lstm, gru = cell_spec("lstm", proj_size=2), cell_spec("gru")
    assert (lstm.zoneout, gru.zoneout) == (("zh", "zc"), ("zh",))
    assert lstm.args("forward", "pointwise")[-2:] == ("zh", "zc")
    assert gru.args("backward", "pointwise")[-1] == "zh"
    for spec in (lstm, gru):
        for direction in ("forward", "backward"):
            assert not set(spec.zoneout) & set(spec.names(direction))
    assert lstm.buffer("zc").shape == ("T", "B", "H")
    assert lstm.buffer("zh").shape == ("T", "B", "P")
