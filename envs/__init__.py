"""evograd's own Gymnasium environments, installed as `evograd.envs`.

pyproject.toml maps this directory onto the package name `evograd.envs` (setuptools package-dir), so nothing
named `envs` lands in site-packages. Importing this package registers the `evograd/...` ids.
"""
from evograd.gym.registration import ENV_IDS, register_envs

from .lqr import LQREnv, is_controllable

register_envs()

__all__ = ["ENV_IDS", "LQREnv", "is_controllable", "register_envs"]
