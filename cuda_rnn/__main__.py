"""``python -m cuda_rnn``: the same as the ``cuda-rnn`` command."""
from .cli import main

raise SystemExit(main())
