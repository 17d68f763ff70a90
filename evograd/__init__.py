"""evograd: gradient-free and evolutionary optimization with gradient baselines, behind one protocol."""
from . import functions, serialization
from .evaluator import EvaluationError, FunctionEvaluator
from .minimize import MinimizeResult, minimize
from .gym_problem import GymProblem
from .train import TrainResult, train
from .ppo import train_ppo
from .reinforce import train_reinforce
from .rl_loop import RLResult
from .candidates import Candidates, DenseCandidates, SeededCandidates
from .optim import Best, NonFiniteWarning, Optimizer
from .registry import available, hyperparameters, make, register
from .validation import ParameterError
from . import envs_registration  # noqa: F401  (registers the evograd/... Gymnasium ids)

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
    "hyperparameters",
    "make",
    "register",
]
