"""Optimizers behind one protocol (numpy; pycma loads when a cmaes is built). Build them by name with
`evograd.make` (see `registry`); the modules are imported on first use, not here."""
from .base import Best, NonFiniteWarning, Optimizer

__all__ = ["Best", "NonFiniteWarning", "Optimizer"]
