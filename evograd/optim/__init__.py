"""Built-in optimizers; importing this package registers them all."""
from .base import Best, NonFiniteWarning, Optimizer
from .gradient import SGD, Adam

__all__ = ["Adam", "Best", "NonFiniteWarning", "Optimizer", "SGD"]
