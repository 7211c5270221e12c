"""What layers and cells share: named parameters, accumulated gradients, train/eval mode."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from . import init
from .backend import for_device, resolve_device, resolve_dtype
from .validation import check_shape, check_state_dict

Array = Any  # a NumPy array on "cpu", a CuPy array on "cuda"


class Module:
    """Holds named parameters with PyTorch's names and shapes, and their gradients.

    Subclasses define :meth:`_expected_shapes` (and :meth:`_initial` where the init is not
    U(-1/sqrt(H), 1/sqrt(H))) and call :meth:`_setup` from ``__init__``. :attr:`backend` is
    what they compute with on their device (:mod:`cuda_rnn.backend`).
    """

    def _setup(self, dtype: Any, device: str, seed: int | None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.backend = for_device(self.device)
        self.xp = self.backend.xp
        self.training = True
        self.rng = np.random.default_rng(seed)
        self._params = {
            name: self._initial(shape)
            for name, shape in self._expected_shapes().items()
        }
        # zeros rather than zeros_like: NumPy's zeros takes pages from the OS only when a
        # backward first writes them, so building a layer costs its parameters alone.
        self.grads = {k: self.xp.zeros(v.shape, v.dtype) for k, v in self._params.items()}

    def _initial(self, shape: tuple[int, ...]) -> Array:
        """One parameter's initial storage array: U(-1/sqrt(H), 1/sqrt(H)) like PyTorch, drawn
        on the host (:mod:`cuda_rnn.init`)."""
        return init.uniform(self.rng, 1.0 / np.sqrt(self.hidden_size), shape, self.dtype,
                            self.device)

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def parameters(self) -> dict[str, Array]:
        """Name -> live parameter array (updating it in place updates the module)."""
        return dict(self._params)

    def state_dict(self) -> dict[str, Array]:
        """Name -> copy of each parameter, with PyTorch's names, shapes and gate order."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Copy parameters in (NumPy, CuPy or torch tensors), checking names, shapes and values.

        Floating-point values of any precision are cast to the module's dtype, as
        ``torch.nn.Module.load_state_dict`` does.

        Raises
        ------
        ValueError
            For a missing, unexpected or misshapen tensor, one of a non-floating dtype, or one
            holding NaN or inf (naming its key); nothing is changed then.
        """
        expected = self._expected_shapes()
        check_state_dict(state_dict, expected, self._params_dtype())
        for name in expected:
            self._params[name][...] = self.backend.asarray(state_dict[name], self.dtype)

    def with_parameters(self, params: dict[str, Array]) -> "Module":
        """A module of this configuration whose parameters ARE the given arrays (no copy).

        The new module has its own zeroed ``grads``, saved forward state and training flag;
        it shares the generator ``rng`` with this one (assign a new one to separate them).
        This is how cuda_rnn.torch runs on memory owned by torch Parameters.

        Raises
        ------
        ValueError
            For missing or unexpected names, or an array whose shape, dtype or kind
            (NumPy on "cpu", CuPy on "cuda") differs from this module's parameters.
        """
        expected = self._expected_shapes()
        missing = sorted(set(expected) - set(params))
        extra = sorted(set(params) - set(expected))
        if missing or extra:
            raise ValueError(
                f"params: expected keys {sorted(expected)}, missing {missing}, unexpected {extra}"
            )
        dtype = self._params_dtype()
        for name, shape in expected.items():
            check_shape(params[name], shape, f"params[{name!r}]")
            a = params[name]
            if not isinstance(a, self.xp.ndarray) or a.dtype != dtype:
                raise ValueError(
                    f"params[{name!r}]: expected a {self.xp.__name__} array of dtype {dtype}, "
                    f"got {type(a).__name__} of dtype {getattr(a, 'dtype', None)}"
                )
        new = copy.copy(self)
        new._params = dict(params)
        new.grads = {k: self.xp.zeros_like(v) for k, v in new._params.items()}
        new._clear_saved()
        return new

    def _clear_saved(self) -> None:
        """Forget what the last forward saved for backward."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every accumulated gradient to zero."""
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode: bool = True) -> "Module":
        """Training mode (the default): dropout between layers is applied."""
        self.training = bool(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: no dropout."""
        return self.train(False)

    def _params_dtype(self) -> Any:
        return next(iter(self._params.values())).dtype
