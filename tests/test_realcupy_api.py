"""Every CuPy, cupy_backends and nvmath name cuda_rnn calls exists in the real packages and
takes the arguments cuda_rnn passes (tests/cupy_api.py lists them; test_cudasim.py checks the
same list against the simulator).

Needs the real CuPy and nvmath-python (no GPU): CuPy's Cython functions carry their
signature in the first line of their docstring, which is read where ``inspect`` cannot.
"""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from cupy_api import API, SCANNED, check_call, resolve, scan_library

pytestmark = pytest.mark.realcupy

cupy = pytest.importorskip("cupy")
nvmath = pytest.importorskip("nvmath")
import cupy_backends  # noqa: E402  (installed with cupy)

_SIGNATURE_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+)\((.*)\)(?:\s*->.*)?\s*$")
_ARG_DOC = re.compile(r"^\s*(\w+) \((\w+)\):")


def _split(params: str) -> list[str]:
    pieces, depth, current = [], 0, ""
    for char in params:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            pieces.append(current.strip())
            current = ""
        else:
            current += char
    return [p for p in [*pieces, current.strip()] if p]


def documented_signature(obj: object) -> tuple[inspect.Signature, dict[str, str]]:
    """The signature Cython writes into the docstring (the most specific line: one without
    ``**kwargs`` when there is one) and the declared type of each parameter, from the
    signature (``tuple options``) or from the Args section (``grid (tuple):``)."""
    lines = (obj.__doc__ or "").replace("\\*", "*").splitlines()
    found = [m.group(2) for line in lines if (m := _SIGNATURE_LINE.match(line))]
    assert found, f"{obj!r}: no signature in its docstring"
    text = next((f for f in found if "**" not in f), found[0])
    params, types, kind = [], {}, inspect.Parameter.POSITIONAL_OR_KEYWORD
    for token in _split(text):
        if token == "/":
            params = [p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for p in params]
        elif token == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
        elif token.startswith("**"):
            params.append(inspect.Parameter(token[2:], inspect.Parameter.VAR_KEYWORD))
        elif token.startswith("*"):
            params.append(inspect.Parameter(token[1:], inspect.Parameter.VAR_POSITIONAL))
            kind = inspect.Parameter.KEYWORD_ONLY
        else:
            declaration, eq, default = token.partition("=")
            words = declaration.split()
            if len(words) > 1:
                types[words[-1]] = words[-2]
            params.append(inspect.Parameter(words[-1], kind, default=default if eq
                                            else inspect.Parameter.empty))
    for line in lines:
        if m := _ARG_DOC.match(line):
            types.setdefault(m.group(1), m.group(2))
    return inspect.Signature(params), types


def real_signature(obj: object) -> tuple[inspect.Signature, dict[str, str]]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return documented_signature(obj)
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_POSITIONAL in kinds:  # a Cython slot: (self, /, *args, **kwargs)
        return documented_signature(obj)
    return signature, {}


class _ProtocolStream:
    """A foreign stream object as Stream.from_external takes it (never used on a device)."""

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, 0x1234)


def _real(name: str) -> object:
    modules = {"cupy": cupy, "cupy_backends": cupy_backends, "nvmath": nvmath}
    if API[name].instance:
        owner, attribute = name.rsplit(".", 1)
        cls = resolve(owner, modules)
        # Stream sets ptr in its constructor; from_external makes one without a device.
        holder = cupy.cuda.Stream.from_external(_ProtocolStream()) \
            if cls is cupy.cuda.Stream else cls
        return getattr(holder, attribute)
    return resolve(name, modules)


def test_the_list_holds_every_name_the_library_reaches() -> None:
    scanned = scan_library()
    assert sorted(scanned) == sorted(SCANNED)
    for name, (positional, keywords) in scanned.items():
        use = SCANNED[name]
        assert (use.positional is None) == (positional < 0), name
        if positional >= 0:
            assert (use.positional, set(use.keywords)) == (positional, keywords), name


@pytest.mark.parametrize("name", sorted(API))
def test_the_real_packages_take_each_name_as_the_library_uses_it(name: str) -> None:
    use = API[name]
    target = _real(name)
    if use.positional is None:
        return
    if name == "cupy.RawKernel.__call__":
        # The keywords go on to Function.__call__, which CuPy documents here.
        assert "**kwargs" in target.__doc__.splitlines()[0]
        signature, types = documented_signature(target)
    else:
        signature, types = real_signature(target)
    check_call(signature, use, name)
    for parameter, kind in use.types.items():
        assert types.get(parameter) == kind, (name, parameter, types)


def test_rawmodule_takes_keywords_only_and_options_as_a_tuple() -> None:
    with pytest.raises(TypeError):
        cupy.RawModule("__global__ void f() {}")
    with pytest.raises(TypeError, match="options"):
        cupy.RawModule(code="__global__ void f() {}", options=["--std=c++17"])
    module = cupy.RawModule(code="__global__ void f() {}", options=("--std=c++17",),
                            name_expressions=["f"])
    assert module.name_expressions == ("f",)


def test_kernel_launches_take_tuples_and_a_stream_keyword() -> None:
    signature, types = documented_signature(cupy.RawKernel.__call__)
    assert types["grid"] == types["block"] == "tuple"
    assert "shared_mem" in signature.parameters
    # The keywords reach Function.__call__ (shared_mem, stream, cooperative flag).
    assert "**kwargs" in cupy.RawKernel.__call__.__doc__.splitlines()[0]


def test_external_streams_come_from_the_cuda_stream_protocol() -> None:
    stream = cupy.cuda.Stream.from_external(_ProtocolStream())
    assert stream.ptr == 0x1234
    with pytest.raises(TypeError, match="CUDA stream protocol"):
        cupy.cuda.Stream.from_external(object())
    with pytest.warns(DeprecationWarning, match="ExternalStream is deprecated"):
        cupy.cuda.ExternalStream(0x1234)


def test_cupy_and_cuda_rnn_agree_on_bfloat16() -> None:
    from cupy._util import bf16_loop

    from cuda_rnn.cuda import dtypes

    # bf16_loop adds loops only where CuPy enabled bfloat16 (NumPy >= 2.1.2, ml_dtypes).
    cupy_has_bf16 = len(bf16_loop(1, 1)) > 0
    assert cupy_has_bf16 == (np.lib.NumpyVersion(np.__version__) >= dtypes.BFLOAT16_MIN_NUMPY)
    assert cupy_has_bf16, "the test extra installs NumPy >= 2.1.2 and ml_dtypes"
    assert dtypes.storage_dtype("bfloat16").name == "bfloat16"
    assert dtypes.storage_dtype("bfloat16").itemsize == 2
