"""cupy_backends of the CPU simulator (see tests/cudasim/cupy/__init__.py)."""
