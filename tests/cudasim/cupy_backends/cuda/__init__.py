"""cupy_backends.cuda of the CPU simulator."""
