"""Packaging for cuda_rnn: the Python package plus the CUDA sources in kernels_cu/ as package data."""
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def cuda_extra(major: str) -> list[str]:
    """What the CUDA path needs for CUDA ``major``.

    CuPy 14.2's [ctk] extra brings NVRTC, the CUDA headers and libcublas as wheels; nvmath-python
    calls cuBLAS (it loads the same libcublas as CuPy, through cuda-pathfinder; its own cu12/cu13
    extras would add cuDSS, cuTENSOR and cuFile, which cuda_rnn does not use). CuPy enables
    bfloat16 (as ml_dtypes.bfloat16) only with NumPy >= 2.1.2.
    """
    return [f"cupy-cuda{major}x[ctk]>=14.2,<15", "nvmath-python>=1.0,<2", "ml-dtypes>=0.5",
            "numpy>=2.1.2"]


setup(
    name="cuda_rnn",
    version="0.1.0",
    description="RNN, LSTM and GRU with exact BPTT: NumPy reference and fused CUDA kernels via CuPy",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["cuda_rnn", "cuda_rnn.reference", "cuda_rnn.cuda", "cuda_rnn.kernels_cu"],
    # kernels_cu/ sits at the top of the repo (beside the Python it serves) and is installed
    # as the subpackage cuda_rnn.kernels_cu, so importlib.resources finds it installed or not.
    package_dir={"cuda_rnn.kernels_cu": "kernels_cu"},
    package_data={"cuda_rnn.kernels_cu": ["*.cu", "*.cuh"]},
    install_requires=["numpy>=1.24", "nvtx>=0.2"],
    extras_require={
        "cuda12": cuda_extra("12"),
        "cuda13": cuda_extra("13"),
        # Real CuPy, which installs and compiles through NVRTC with no GPU: the `realcupy`
        # tests compile every kernel through CuPy's own pipeline and check every CuPy and
        # nvmath name the library calls against the real packages.
        "test": ["pytest>=7", "hypothesis>=6", "torch>=2.4", *cuda_extra("13")],
        "plot": ["matplotlib>=3.6"],
        "digits": ["scikit-learn>=1.0"],
        "progress": ["tqdm>=4.60"],
    },
    entry_points={"console_scripts": ["cuda-rnn=cuda_rnn.cli:main"]},
)
