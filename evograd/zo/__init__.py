"""Training torch modules without backpropagation: zeroth-order estimators applied in place (MeZO), forward
gradients, and low-rank population ES evaluated as one batched forward pass (EGGROLL).

The numpy estimators that any fitness function can use through ask/tell live in `evograd.optim`; this
package holds what needs torch and works on a module's parameters where they are, without a flat copy.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> module, imported on first use (PEP 562) so that `import evograd.zo` loads no torch
_LAZY = {
    "LowRankES": "evograd.zo.lowrank", "LowRankPopulation": "evograd.zo.lowrank",
    "fit": "evograd.zo.training", "FitResult": "evograd.zo.training", "InPlaceMeZO": "evograd.zo.mezo",
    "forward_gradient": "evograd.zo.forward_grad", "value_and_forward_gradient": "evograd.zo.forward_grad",
    "ForwardGrad": "evograd.zo.forward_grad",
    "zo_grasp_scores": "evograd.zo.pruning", "zo_grasp_mask": "evograd.zo.pruning",
    "grasp_scores": "evograd.zo.pruning",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'evograd.zo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
