"""Storage dtypes: bfloat16 rounding (CPU, against torch), casts on the GPU."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.cuda import dtypes


def test_bfloat16_rounding_matches_torch(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    scales = np.exp(rng.uniform(-30, 30, 20000)).astype(np.float32)
    x = (rng.standard_normal(20000).astype(np.float32) * scales)
    x[:4] = [np.inf, -np.inf, 3.3895314e38, -1.0e-40]
    got = dtypes.bfloat16_bits(x)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_bfloat16_nan_stays_nan(rng: np.random.Generator) -> None:
    x = rng.standard_normal(8).astype(np.float32)
    x[[1, 5]] = np.nan
    back = dtypes.bfloat16_to_float32(dtypes.bfloat16_bits(x))
    assert np.isnan(back[[1, 5]]).all()
    assert np.isfinite(np.delete(back, [1, 5])).all()


def test_bfloat16_widening_is_exact(rng: np.random.Generator) -> None:
    bits = rng.integers(0, 0x7F80, 5000).astype(np.uint16)
    wide = dtypes.bfloat16_to_float32(bits)
    np.testing.assert_array_equal(dtypes.bfloat16_bits(wide), bits)


def test_storage_names_and_accumulators() -> None:
    assert dtypes.storage_dtype("float32") == np.float32
    assert dtypes.dtype_name(dtypes.storage_dtype("bfloat16")) == "bfloat16"
    assert dtypes.acc_dtype("bfloat16") == np.float32
    assert dtypes.acc_dtype("float64") == np.float64
    with pytest.raises(ValueError, match="dtype: expected one of"):
        dtypes.storage_dtype("int8")
    with pytest.raises(ValueError, match="dtype: expected a storage dtype"):
        dtypes.dtype_name(np.int64)


def test_bfloat16_needs_the_numpy_cupy_enables_it_with(monkeypatch: pytest.MonkeyPatch) -> None:
    dtypes._bfloat16_dtype.cache_clear()
    monkeypatch.setattr(np, "__version__", "2.1.1")
    try:
        with pytest.raises(RuntimeError, match=r"NumPy >= 2\.1\.2 .* got NumPy 2\.1\.1"):
            dtypes.storage_dtype("bfloat16")
        assert dtypes.storage_dtype("float16") == np.float16
    finally:
        dtypes._bfloat16_dtype.cache_clear()
    monkeypatch.undo()
    assert dtypes.storage_dtype("bfloat16").name == "bfloat16"


@pytest.mark.gpu
@pytest.mark.parametrize("name", dtypes.DTYPE_NAMES)
def test_cast_round_trips_through_float32(rng: np.random.Generator, name: str) -> None:
    import cupy

    x = rng.standard_normal((7, 5)) * 3
    stored = dtypes.cast(x, name)
    assert isinstance(stored, cupy.ndarray)
    assert stored.dtype == dtypes.storage_dtype(name)
    back = dtypes.to_float32(stored).get()
    eps = {"float64": 1e-7, "float32": 1e-7, "float16": 1e-3, "bfloat16": 8e-3}[name]
    np.testing.assert_allclose(back, x, rtol=eps, atol=0)
    again = dtypes.cast(back, name)
    np.testing.assert_array_equal(dtypes.to_float32(again).get(), back)


@pytest.mark.gpu
def test_bfloat16_cast_matches_host_rounding(rng: np.random.Generator) -> None:
    import cupy

    x = rng.standard_normal(1000).astype(np.float32) * 100
    on_device = dtypes.cast(cupy.asarray(x), "bfloat16").view(cupy.uint16).get()
    np.testing.assert_array_equal(on_device, dtypes.bfloat16_bits(x))


@pytest.mark.gpu
def test_cast_rejects_integer_arrays(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="array: expected a float array"):
        dtypes.cast(rng.integers(0, 9, 4), "float32")
