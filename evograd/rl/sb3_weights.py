"""A Stable-Baselines3 MlpPolicy's weights as `train_ppo`'s `init_params`, so that a run starts from exactly
the network an SB3 run starts from (paired seeds across the two libraries), or from a trained SB3 policy.

SB3's ActorCriticPolicy (PPO's MlpPolicy, the default net_arch or any pi/vf lists) keeps separate actor and
critic MLPs: mlp_extractor.policy_net / value_net (Linear layers at even indices, activations between them),
then the heads action_net and value_net, and log_std for Box actions. evograd's ActorCritic has the same
layers under other names: actor.net.<i> (the head last, at index 2 x hidden layers), critic.<i>, log_std.
Both compute the same function when the hidden sizes and activation agree (SB3's activation_fn, Tanh by
default, is evograd's "tanh"); SB3's state_dict does not say which activation it used.

This module imports neither stable_baselines3 nor torch: it reads the state_dict, a dict of tensors.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.validation import ParameterError

_OWNER = "sb3_policy_params"
_HIDDEN = re.compile(r"mlp_extractor\.(policy_net|value_net)\.(\d+)\.(weight|bias)")
_HEAD = re.compile(r"(action_net|value_net)\.(weight|bias)")
_NO_PARAMETERS = ("features_extractor.", "pi_features_extractor.", "vf_features_extractor.")


def sb3_policy_params(policy: Any) -> dict[str, np.ndarray]:
    """{evograd ActorCritic parameter name: numpy array} from an SB3 ActorCriticPolicy, an SB3 algorithm
    (its `.policy`), or the policy's `state_dict()` (name -> tensor or array). Pass the result as
    `init_params` (or save it with `np.savez` for a config file's `init_params: path.npz`).

    A state_dict with anything but MlpPolicy's layers (a features extractor with parameters, shared
    layers, gSDE's noise parameters) is a ParameterError naming the key: no such network maps onto ours.
    """
    state = _state_dict(policy)
    out: dict[str, np.ndarray] = {}
    hidden = {"policy_net": set(), "value_net": set()}
    for key in state:
        m = _HIDDEN.fullmatch(key)
        if m:
            hidden[m.group(1)].add(int(m.group(2)))
        elif not (_HEAD.fullmatch(key) or key == "log_std"):
            raise ParameterError(f"The 'policy' parameter of {_OWNER} has {key!r}, which no layer of evograd's "
                                 f"actor-critic matches (only an MlpPolicy's separate actor and critic MLPs and "
                                 f"a parameter-free features extractor map).")
    for net in hidden.values():
        if sorted(net) != list(range(0, 2 * len(net), 2)):
            raise ParameterError(f"The 'policy' parameter of {_OWNER} has MLP layers at indices {sorted(net)}; an "
                                 f"MlpPolicy has Linear layers at 0, 2, 4, ... with activations between them.")
    n_pi, n_vf = len(hidden["policy_net"]), len(hidden["value_net"])
    for key, value in state.items():
        out[_our_name(key, n_pi, n_vf)] = _numpy(value)
    return out


def _state_dict(policy: Any) -> Mapping:
    if isinstance(policy, Mapping):
        state = policy
    elif hasattr(policy, "policy") and hasattr(policy.policy, "state_dict"):
        state = policy.policy.state_dict()  # an SB3 algorithm (PPO, A2C)
    elif hasattr(policy, "state_dict"):
        state = policy.state_dict()
    else:
        raise ParameterError(f"The 'policy' parameter of {_OWNER} must be an SB3 ActorCriticPolicy, an SB3 "
                             f"algorithm or a policy's state_dict. Got {type(policy).__name__} instead.")
    if any(k.startswith(_NO_PARAMETERS) for k in state):
        key = next(k for k in state if k.startswith(_NO_PARAMETERS))
        raise ParameterError(f"The 'policy' parameter of {_OWNER} has {key!r}: a features extractor with "
                             f"parameters, which evograd's actor-critic does not have (MlpPolicy's flattens).")
    return state


def _our_name(key: str, n_pi: int, n_vf: int) -> str:
    m = _HIDDEN.fullmatch(key)
    if m:
        net, index, kind = m.groups()
        return f"actor.net.{index}.{kind}" if net == "policy_net" else f"critic.{index}.{kind}"
    m = _HEAD.fullmatch(key)
    if m:
        head, kind = m.groups()
        if head == "value_net":
            return f"critic.{2 * n_vf}.{kind}"
        # no hidden layer: evograd's actor is then policy="linear", a bare Linear
        return f"actor.net.{2 * n_pi}.{kind}" if n_pi else f"actor.net.{kind}"
    return key  # log_std


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, read without importing torch
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


__all__ = ["sb3_policy_params"]
