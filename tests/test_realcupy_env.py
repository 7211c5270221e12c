"""cuda_rnn with the real CuPy and nvmath-python installed and no GPU, each check in a fresh
Python process (so no import made by another test can hide a missing one).

cuBLAS resolution is checked under a stand-in CUDA driver: nvmath's bindings ask the driver
for its version (cuDriverGetVersion in libcuda.so.1) before they load libcublas, so with no
driver at all nothing resolves. The stand-in is a shared library built here that defines
that one function; nothing else of the driver is called.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cupy_api import API

pytestmark = pytest.mark.realcupy

pytest.importorskip("cupy")
pytest.importorskip("nvmath")

REPO = Path(__file__).resolve().parent.parent
#: The C symbol behind each nvmath cuBLAS function cuda_rnn calls.
C_NAMES = {"create": "cublasCreate_v2", "set_stream": "cublasSetStream_v2",
           "set_workspace": "cublasSetWorkspace_v2", "gemm_ex": "cublasGemmEx",
           "get_property": "cublasGetProperty"}


def run_fresh(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a new interpreter from the repository root; return its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, **(env or {})},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def stand_in_driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a libcuda.so.1 that reports driver version 13.0."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.fail(f"needs a C compiler to build the stand-in driver: {compiler!r} (set CC)")
    folder = tmp_path_factory.mktemp("driver")
    source = folder / "driver.c"
    source.write_text("int cuDriverGetVersion(int* version) { *version = 13000; return 0; }\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", str(source),
                    "-o", str(folder / "libcuda.so.1")], check=True)
    return folder


def test_every_module_imports_with_real_cupy_and_no_gpu() -> None:
    out = run_fresh("""
        import importlib, pkgutil, cuda_rnn
        names = [m.name for m in pkgutil.walk_packages(cuda_rnn.__path__, "cuda_rnn.")
                 if not m.name.endswith(".__main__")]  # that one runs the command line
        for name in names:
            importlib.import_module(name)
        print(len(names))
    """)
    # Every .py file but cuda_rnn/__init__.py (imported first) and __main__.py.
    assert int(out) == len(list(REPO.glob("cuda_rnn/**/*.py"))) - 2


def test_a_cuda_layer_says_there_is_no_usable_driver() -> None:
    out = run_fresh("""
        import cuda_rnn as cr
        try:
            cr.LSTM(4, 8, device="cuda")
        except RuntimeError as exc:
            print(type(exc).__name__, exc)
    """)
    assert out.startswith("RuntimeError device='cuda' is not available: CuPy found no "
                          "usable CUDA driver"), out
    assert "pip install 'cuda_rnn[cuda13]'" in out


def test_cublas_without_a_driver_is_a_runtime_error_naming_the_install() -> None:
    out = run_fresh("""
        from cuda_rnn.cuda import blas
        try:
            blas.cublas_bindings()
        except RuntimeError as exc:
            print(exc)
    """)
    assert "cuBLAS could not be loaded through nvmath-python" in out
    assert "CUDA driver is not found" in out and "cuda_rnn[cuda13]" in out


def test_cublas_functions_resolve_in_the_libcublas_cupy_uses(stand_in_driver: Path) -> None:
    used = sorted(name.rsplit(".", 1)[1] for name, use in API.items()
                  if name.startswith("nvmath.bindings.cublas.") and use.positional is not None)
    assert sorted(C_NAMES) == used
    out = run_fresh(f"""
        import ctypes, json, os
        from cuda_rnn.cuda import blas
        cublas = blas.cublas_bindings()  # first: nothing of CuPy is imported yet
        from nvmath.bindings._internal import cublas as internal
        pointers = internal._inspect_function_pointers()
        from cupy_backends.cuda.libs import cublas as cupy_cublas  # CuPy's own loading
        cupys = ctypes.CDLL("libcublas.so.13", mode=os.RTLD_NOLOAD)
        names = {sorted(C_NAMES.values())!r}
        print(json.dumps({{n: [pointers["__" + n],
                              ctypes.cast(getattr(cupys, n), ctypes.c_void_p).value]
                          for n in names}}))
        print(cublas.get_property(0))
    """, {"LD_LIBRARY_PATH": str(stand_in_driver)})
    table, major = out.splitlines()
    for name, (nvmath_pointer, cupy_pointer) in json.loads(table).items():
        assert nvmath_pointer and nvmath_pointer == cupy_pointer, name
    assert int(major) == 13
