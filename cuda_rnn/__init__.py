"""cuda_rnn: vanilla RNN, LSTM and GRU with exact backpropagation through time.

NumPy reference on any machine, fused CUDA kernels (through CuPy) on an NVIDIA GPU; shapes,
names and gate order follow PyTorch.
"""
from .cells import GRUCell, LSTMCell, RNNCell
from .diagnostics import gradcheck
from .layers import GRU, LSTM, RNN
from .model import SequenceModel
from .optim import SGD, Adam, clip_grad_norm, clip_grad_value
from .train import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = [
    "GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "gradcheck",
    "SequenceModel", "SGD", "Adam", "clip_grad_norm", "clip_grad_value", "TrainConfig", "Trainer",
    "__version__",
]
