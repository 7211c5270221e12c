"""cuda_rnn: vanilla RNN, LSTM and GRU with exact backpropagation through time.

NumPy reference on any machine, fused CUDA kernels (through CuPy) on an NVIDIA GPU; shapes,
names and gate order follow PyTorch.
"""
from .cells import GRUCell, LSTMCell, RNNCell
from .diagnostics import gradcheck
from .layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "gradcheck", "__version__"]
