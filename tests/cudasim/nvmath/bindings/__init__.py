"""nvmath.bindings of the CPU simulator (only cublas)."""
