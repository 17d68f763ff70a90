"""Gymnasium tasks for population methods (torch, gymnasium): the problem, batched rollouts, policies,
the vectorized CartPole, env registration, video and the training loop. Importing it registers the
evograd/... env ids."""
from .registration import register_envs

register_envs()
