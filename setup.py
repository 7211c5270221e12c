"""Packaging for cuda_rnn: the Python package plus the CUDA sources in kernels_cu/ as package data."""
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent

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
        # CuPy 14 loads cuBLAS and NVRTC from the CUDA Toolkit wheels of its [ctk] extra, and
        # keeps bfloat16 as ml_dtypes.bfloat16 (which DLPack exchange with torch needs).
        "cuda12": ["cupy-cuda12x[ctk]>=14", "ml-dtypes>=0.5"],
        "cuda13": ["cupy-cuda13x[ctk]>=14", "ml-dtypes>=0.5"],
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "torch>=2.4",
            # NVRTC and the CUDA headers, to compile every kernel on a machine with no GPU
            "cuda-bindings>=13",
            "nvidia-cuda-nvrtc>=13",
            "nvidia-cuda-runtime>=13",
            "nvidia-cuda-cccl>=13",
        ],
        "plot": ["matplotlib>=3.6"],
        "digits": ["scikit-learn>=1.0"],
        "progress": ["tqdm>=4.60"],
    },
    entry_points={"console_scripts": ["cuda-rnn=cuda_rnn.cli:main"]},
)
