"""Shared test set-up.

GPU tests (marked `gpu`) run only where CuPy sees a GPU, or on the CPU device simulator with
``pytest --cuda-sim -m gpu`` (tests/cudasim: the real kernels compiled by the host C++
compiler, CuPy and cuBLAS modelled in NumPy). Under the simulator only `gpu` tests are
collected, and those also marked `hardware` (torch CUDA tensors) are skipped: they need the
real GPU. Tests marked `simulator` check the simulator itself and run only under --cuda-sim.
Tests marked `realcupy` need the real CuPy package (no GPU): skipped where it is not
installed, and their files (tests/test_realcupy_*.py, which import CuPy at collection) are not
even collected under --cuda-sim, where `import cupy` finds the simulator.
"""
from __future__ import annotations

import importlib.util
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

SIMULATOR = Path(__file__).resolve().parent / "cudasim"
#: The top-level packages the simulator stands in for (real ones may be installed too).
SIMULATED = ("cupy", "cupy_backends", "nvmath")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cuda-sim", action="store_true",
                     help="run the gpu tests on the CPU device simulator in tests/cudasim")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--cuda-sim"):
        early = [name for name in SIMULATED if name in sys.modules]
        if early:
            raise pytest.UsageError(f"--cuda-sim: {early} imported before the simulator could "
                                    f"take their place")
        sys.path.insert(0, str(SIMULATOR))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption("--cuda-sim") and collection_path.name.startswith("test_realcupy"):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from cuda_rnn.backend import cuda_available

    if config.getoption("--cuda-sim"):
        deselected = [item for item in items
                      if "gpu" not in item.keywords or "realcupy" in item.keywords]
        items[:] = [item for item in items
                    if "gpu" in item.keywords and "realcupy" not in item.keywords]
        config.hook.pytest_deselected(items=deselected)
        skip = pytest.mark.skip(reason="needs the real GPU: the CPU simulator has no torch "
                                       "CUDA tensors")
        for item in items:
            if "hardware" in item.keywords:
                item.add_marker(skip)
        return
    skip_sim = pytest.mark.skip(reason="checks of the CPU simulator itself: run with --cuda-sim")
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU and CuPy "
                                       "(pip install 'cuda_rnn[cuda13]')")
    skip_real = pytest.mark.skip(reason="needs the real CuPy package, no GPU "
                                        "(pip install 'cuda_rnn[test]')")
    real_cupy = importlib.util.find_spec("cupy") is not None
    for item in items:
        if "simulator" in item.keywords:
            item.add_marker(skip_sim)
        elif "realcupy" in item.keywords and not real_cupy:
            item.add_marker(skip_real)
        elif "gpu" in item.keywords and not cuda_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A fresh generator per test, seeded from the test's name so failures reproduce."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
