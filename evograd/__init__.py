"""evograd: gradient-free and evolutionary optimization with gradient baselines, behind one protocol."""
from . import (
    envs_registration,  # noqa: F401  (registers the evograd/... Gymnasium ids)
    functions,
    serialization,
)
from .candidates import Candidates, DenseCandidates, SeededCandidates
from .evaluator import EvaluationError, FunctionEvaluator
from .gym_problem import GymProblem
from .minimize import MinimizeResult, minimize
from .optim import Best, NonFiniteWarning, Optimizer
from .ppo import train_ppo
from .registry import available, hyperparameters, make, register
from .reinforce import train_reinforce
from .rl_loop import RLResult
from .train import TrainResult, train
from .validation import ParameterError

__version__ = "0.1.0"

__all__ = [
    "Best",
    "Candidates",
    "EvaluationError",
    "FunctionEvaluator",
    "GymProblem",
    "MinimizeResult",
    "RLResult",
    "TrainResult",
    "train_ppo",
    "train_reinforce",
    "train",
    "minimize",
    "DenseCandidates",
    "NonFiniteWarning",
    "Optimizer",
    "ParameterError",
    "SeededCandidates",
    "available",
    "functions",
    "serialization",
    "hyperparameters",
    "make",
    "register",
]
