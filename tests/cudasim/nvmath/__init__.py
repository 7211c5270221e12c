"""nvmath-python of the CPU simulator: only ``nvmath.bindings.cublas`` (what cuda_rnn calls)."""
