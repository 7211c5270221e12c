"""NumPy reference of every cell: forward over a sequence and reverse-time BPTT.

Each module (rnn, lstm, gru) exposes ``<cell>_forward`` and ``<cell>_backward`` with the same
signatures as its CUDA twin in :mod:`cuda_rnn.cuda`; the layers call either through one name.
"""
