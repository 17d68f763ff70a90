"""Built-in optimizers; importing this package registers them all."""
from .. import evotorch_interop  # noqa: F401  (registers evotorch_*; EvoTorch loads only when one is built)
from . import ars, cbo, cmaes, ga, openai_es, snes  # noqa: F401  (registration side effects)
from .base import Best, NonFiniteWarning, Optimizer
from .gradient import SGD, Adam

__all__ = ["Adam", "Best", "NonFiniteWarning", "Optimizer", "SGD"]
