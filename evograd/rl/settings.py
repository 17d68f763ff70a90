"""The settings of `train_ppo` and `train_reinforce` as one object each: `PPOConfig`, `ReinforceConfig`.

Frozen dataclasses whose fields and defaults are the single source of truth: the training functions take
one (`train_ppo(env, PPOConfig(n_steps=32))`), their keyword arguments are a thin layer that builds one
(`train_ppo(env, n_steps=32)`, also over a given config), and the experiment configs generate their `ppo:`
and `reinforce:` blocks from these fields. Values are checked where they are used, by the training
function, with evograd's one message shape ("The 'n_steps' parameter of train_ppo must be ...").
This module imports neither torch nor gymnasium, so config checks and `evograd schema` can read it.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..core.validation import ParameterError

ACTIVATIONS = ("tanh", "relu", "elu", "gelu")  # the hidden-layer activations of the actor and critic MLPs


@dataclass(frozen=True, kw_only=True)
class RLConfig:
    """What PPO and REINFORCE share (SB3 names).

    policy : "mlp" (hidden_sizes, activation), "linear", or a torch module (obs_dim -> act_dim).
    seed : seeds the networks' init, the action sampling and the env resets.
    max_env_steps : training budget in env steps (evaluation steps are counted apart); the schedules
        decay over it (over max_seconds when max_env_steps is None). There is no default budget: a run
        needs max_env_steps or max_seconds (or both; the first reached ends it), so no caller is capped by a
        default it forgot (a benchmark once stopped our PPO at 100k steps while every other method ran on).
    gamma : discount. learning_rate : a float, an rl-zoo string "lin_<value>" (linear decay to 0), or a
        callable of progress_remaining (1 -> 0).
    ent_coef, vf_coef, max_grad_norm, normalize_advantage : as in SB3.
    hidden_sizes, activation : the MLP actor's hidden layers and their activation (one of ACTIVATIONS).
    critic_hidden_sizes : None gives hidden_sizes for an MLP actor and (64, 64) otherwise (a linear critic
        does not learn CartPole with the zoo settings). log_std_init : initial log std of the Box Gaussian.
        ortho_init : SB3's orthogonal init (hidden gain sqrt 2, actor head 0.01, critic head 1).
    eval_every, eval_episodes, eval_seed : deterministic evaluation of the initial policy, then every
        eval_every training steps (None: 20 times over max_env_steps, else every 10 updates) and at the end;
        episode i resets with seed eval_seed + i, or by default with `evograd.gym.rollouts.evaluation_seeds(seed,
        eval_episodes)`: the seeds every method of a comparison is evaluated on (population methods too).
    max_seconds, target_return : stop on wall clock, or as soon as an evaluation mean reaches the target.
    env_kwargs : keyword arguments of gym.make (or of the env constructor).
    torch_threads : torch intra-op threads during training (restored afterwards); None leaves it alone.
    """

    policy: Any = "mlp"
    seed: int = 0
    max_env_steps: int | None = None
    gamma: float = 0.99
    learning_rate: float | str | Callable[[float], float] = 3e-4
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    critic_hidden_sizes: tuple[int, ...] | None = None
    log_std_init: float = 0.0
    ortho_init: bool = True
    eval_every: int | None = None
    eval_episodes: int = 10
    eval_seed: int | None = None
    max_seconds: float | None = None
    target_return: float | None = None
    env_kwargs: dict | None = None
    torch_threads: int | None = 1

    def kwargs(self) -> dict[str, Any]:
        """The fields as a dict (no deep copy: a torch module given as `policy` stays that module)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, kw_only=True)
class PPOConfig(RLConfig):
    """PPO's settings; names and defaults are SB3's PPO's, so an rl-baselines3-zoo entry carries over.

    n_envs : env copies in a SyncVectorEnv. n_steps, batch_size, n_epochs : rollout length per env,
        minibatch size, passes over each rollout. gae_lambda : GAE lambda. clip_range : like learning_rate,
        a float, "lin_<value>" or a callable. target_kl : SB3's early stop of an update.
    normalize_obs, normalize_reward : VecNormalize (clip 10, return std with PPO's gamma). The returned
        policy carries the observation statistics (without the clip at 10 std).
    norm_init_count : the count VecNormalize's running statistics start from, with mean 0 and variance 1.
        The default 1e-4 is SB3's RunningMeanStd (its epsilon), so normalized observations and rewards equal
        SB3's from the first step; 0 starts from no prior at all (the first batch sets the statistics, as
        the evolution strategies' observation statistics do).
    init_params : the actor-critic's initial weights instead of the seeded init (None); a resumed run takes
        its checkpoint's instead. A flat vector in the order of `ActorCritic.named_parameters()` (log_std
        first for Box actions, then the actor's layers, then the critic's: the order of a checkpoint's
        "params"), or a dict naming every parameter ("actor.net.0.weight", ..., "critic.4.bias", "log_std")
        with its array; or a path to a .npy file (the vector) or a .npz file (the dict), which is how a
        config file gives it (a relative path is read from the working directory). A wrong size, shape or
        name is a ParameterError naming the parameter. `evograd.rl.sb3_weights.sb3_policy_params` converts
        an SB3 MlpPolicy's weights to the dict (pair the hidden_sizes and activation with its net_arch and
        activation_fn), so a run can start from exactly the network SB3 starts from.
    The shared fields are RLConfig's.
    """

    n_envs: int = 1
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gae_lambda: float = 0.95
    clip_range: float | str | Callable[[float], float] = 0.2
    target_kl: float | None = None
    normalize_obs: bool = False
    normalize_reward: bool = False
    norm_init_count: float = 1e-4
    init_params: Any = None  # a flat array, a dict name -> array, a .npy/.npz path (see the docstring)


@dataclass(frozen=True, kw_only=True)
class ReinforceConfig(RLConfig):
    """REINFORCE's settings. n_episodes : complete episodes per gradient step (one env each). The shared
    fields are RLConfig's (learning_rate defaults to 1e-3 here)."""

    learning_rate: float | str | Callable[[float], float] = 1e-3
    n_episodes: int = 8


C = TypeVar("C", bound=RLConfig)


def settings(cls: type[C], config: C | None, overrides: dict[str, Any], owner: str) -> C:
    """`config` (default: cls()) with `overrides` (keyword arguments of `owner`) replacing its fields; an
    unknown name is a ParameterError with the accepted ones and a close match."""
    if config is None:
        config = cls()
    elif not isinstance(config, cls):
        raise ParameterError(f"The 'config' parameter of {owner} must be a {cls.__name__}. "
                             f"Got {type(config).__name__} instead.")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in overrides:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(f"{owner} got an unknown parameter {key!r}.{hint} Accepted: {', '.join(names)}, "
                                 f"and callback, progress, checkpoint, resume.")
    return dataclasses.replace(config, **overrides) if overrides else config


__all__ = ["ACTIVATIONS", "PPOConfig", "RLConfig", "ReinforceConfig", "settings"]
