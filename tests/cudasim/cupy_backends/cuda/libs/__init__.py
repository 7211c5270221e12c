"""cupy_backends.cuda.libs of the CPU simulator."""
