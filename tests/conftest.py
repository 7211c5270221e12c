"""Shared test set-up: GPU tests (marked `gpu`) run only where CuPy sees a GPU."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from cuda_rnn.backend import cuda_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and CuPy (pip install 'cuda_rnn[cuda13]')")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A fresh generator per test, seeded from the test's name so failures reproduce."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
