"""Forward operators y = A(x), as deepinv ``Physics`` objects."""
from datamodules.operators.base import Identity, LinearOperator, NonlinearOperator, spectral_norm

__all__ = ["Identity", "LinearOperator", "NonlinearOperator", "spectral_norm"]
