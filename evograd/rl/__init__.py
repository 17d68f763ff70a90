"""Gradient RL baselines (torch, gymnasium): PPO, REINFORCE, their loop and shared parts, and the
torch SGD/Adam optimizers behind the protocol."""
