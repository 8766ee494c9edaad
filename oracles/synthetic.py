"""BoTorch synthetic test functions as oracles (named ``synthetic`` so it does not shadow ``botorch``).

Designs live in the prior's value range ``[lo, hi]^d``; each coordinate is
mapped affinely onto the test function's box:

    z_j = b_j^low + (x_j − lo) / (hi − lo) · (b_j^high − b_j^low)

BoTorch's functions are minimization problems, so ``negate=True`` by default
(the optimizer maximizes ``−f``).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import DifferentiableOracle

__all__ = ["BoTorchOracle", "botorch_functions"]


def botorch_functions() -> dict[str, type]:
    """Accepted names of :class:`BoTorchOracle` → BoTorch classes (lower-case keys)."""
    from botorch.test_functions import synthetic as s  # lazy: botorch is slow to import

    classes = (
        s.Ackley, s.Beale, s.Branin, s.Bukin, s.Cosine8, s.DixonPrice, s.DropWave,
        s.EggHolder, s.Griewank, s.Hartmann, s.HolderTable, s.Levy, s.Michalewicz,
        s.Powell, s.Rastrigin, s.Rosenbrock, s.Shekel, s.SixHumpCamel, s.StyblinskiTang,
        s.ThreeHumpCamel,
    )  # fmt: skip
    return {c.__name__.lower(): c for c in classes}


class BoTorchOracle(DifferentiableOracle):
    """A BoTorch ``SyntheticTestFunction`` evaluated on designs in ``value_range``.

    Args:
        function: a name from :func:`botorch_functions` (e.g. ``"branin"``,
            ``"hartmann"``), a ``SyntheticTestFunction`` subclass, or an
            instance (its own ``noise_std``/``negate`` must be unset: this
            oracle adds noise and negates).
        value_range: ``(lo, hi)`` of the design coordinates; default ``(-1, 1)``.
        prior: take ``value_range`` (and check the shape ``(d,)``) from a
            ``DiffusionPrior`` instead.
        negate: default ``True`` (maximize ``−f``).
        function_kwargs: passed to the BoTorch class (e.g. ``dim=6``).
        noise_std, seed, executor, chunk_size: see :class:`~oracles.base.Oracle`.
    """

    def __init__(
        self,
        function: Any,
        *,
        value_range: tuple[float, float] | None = None,
        prior: Any = None,
        negate: bool = True,
        function_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from botorch.test_functions.synthetic import SyntheticTestFunction  # lazy: slow import

        if isinstance(function, str):
            table = botorch_functions()
            cls = table.get(function.lower())
            if cls is None:
                raise ValueError(
                    f"unknown BoTorch function {function!r}; accepted: {sorted(table)}"
                )
            function = cls(**(function_kwargs or {}))
        elif isinstance(function, type) and issubclass(function, SyntheticTestFunction):
            function = function(**(function_kwargs or {}))
        elif not isinstance(function, SyntheticTestFunction):
            raise TypeError(
                "function must be a name, a SyntheticTestFunction subclass or an instance, "
                f"got {type(function).__name__}"
            )
        if function.noise_std is not None or function.negate:
            raise ValueError("pass noise_std/negate to BoTorchOracle, not to the BoTorch function")
        if prior is not None:
            if value_range is not None:
                raise ValueError("give value_range or prior, not both")
            if prior.value_range is None:
                raise ValueError(
                    "the prior has no value_range (unbounded designs); pass value_range=(lo, hi)"
                )
            if tuple(prior.shape) != (function.dim,):
                raise ValueError(
                    f"prior designs have shape {tuple(prior.shape)}, "
                    f"but {type(function).__name__} needs ({function.dim},)"
                )
            value_range = prior.value_range
        lo, hi = (
            (-1.0, 1.0) if value_range is None else (float(value_range[0]), float(value_range[1]))
        )
        if not lo < hi:
            raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {value_range}")
        self.function = function
        self.value_range = (lo, hi)
        self.shape = (int(function.dim),)
        self.bounds = (lo, hi)
        self.name = type(function).__name__.lower()
        self._optimal_value = getattr(function, "_optimal_value", None)
        super().__init__(negate=negate, **kwargs)

    def to_function_domain(self, x: torch.Tensor) -> torch.Tensor:
        """Map designs ``(n, d)`` in ``value_range`` to the function's box (float64)."""
        lo, hi = self.value_range
        box = self.function.bounds.to(x.device)
        return box[0] + (x.double() - lo) / (hi - lo) * (box[1] - box[0])

    def to_design(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_function_domain`: ``(n, d)`` box points → designs (float64)."""
        lo, hi = self.value_range
        box = self.function.bounds.to(z.device)
        return lo + (z.double() - box[0]) / (box[1] - box[0]) * (hi - lo)

    @property
    def optimizers(self) -> torch.Tensor | None:
        """Known optimizers as designs in ``value_range``, shape ``(k, d)``, if BoTorch lists them."""
        opts = getattr(self.function, "_optimizers", None)
        if not opts:
            return None
        return self.to_design(torch.tensor(opts, dtype=torch.float64))

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        if self.function.bounds.device != x.device:
            self.function.to(x.device)  # its constants are buffers (e.g. Hartmann's A, P)
        return self.function.evaluate_true(self.to_function_domain(x))
