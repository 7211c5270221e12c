"""CUDA C++ sources of cuda_rnn, shipped as package data and compiled at run time by NVRTC.

Installed, this folder is the subpackage ``cuda_rnn.kernels_cu``; :mod:`cuda_rnn.cuda.loader`
reads the ``.cu`` and ``.cuh`` files through :mod:`importlib.resources`.
"""
