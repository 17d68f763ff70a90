"""rl-baselines3-zoo's tuned hyperparameters for `name: sb3` methods with `hyperparams: zoo` (plain data).

Source: DLR-RM/rl-baselines3-zoo, hyperparams/{ppo,a2c,dqn,sac,td3}.yml at commit 22e3ff2 (2026-04-23), read
from the repository, embedded here (nothing is downloaded at run time). Each entry is the zoo's block minus
what the config decides elsewhere:
  * `n_timesteps`: the budget is the config's budget.env_steps, the same for every method;
  * `policy: MlpPolicy` and the network in `policy_kwargs` (net_arch, activation_fn): the network is the
    config's `policy` block, the same for every method. The zoo's own network is in NETWORKS: to reproduce an
    entry exactly, write it as the method's policy (e.g. `policy: {type: mlp, hidden_sizes: [256, 256],
    activation: relu}` for PPO on HalfCheetah). SB3's default activation is tanh for PPO/A2C and relu for
    SAC/TD3/DQN; evograd's policy block defaults to tanh.
The zoo's other extras keep the zoo's meaning: `n_envs` (DummyVecEnv copies), `normalize` (VecNormalize of
observations and rewards, gamma = the algorithm's), `noise_type`/`noise_std` (TD3's Gaussian or
Ornstein-Uhlenbeck action noise), "lin_<x>" values (linear decay from x to 0 over the budget).
The zoo lists MuJoCo tasks as -v4: the same entries are used for -v5 (Gymnasium 1.x's ids; same dynamics and
rewards up to v5's fixes), and LunarLander's -v3 entries are the zoo's -v3 ones.
"""
from __future__ import annotations

_MUJOCO = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer")


def _mujoco(entries: dict[str, dict]) -> dict[str, dict]:
    """The zoo's -v4 MuJoCo entries, under -v4 and -v5."""
    return {f"{name}-v{v}": dict(hp) for name, hp in entries.items() for v in (4, 5)}


_PPO_LUNAR = dict(n_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01)
_A2C_SDE = dict(normalize=True, ent_coef=0.0, max_grad_norm=0.5, n_steps=8, gae_lambda=0.9, vf_coef=0.4, gamma=0.99,
                use_rms_prop=True, normalize_advantage=False, learning_rate="lin_7e-4", use_sde=True,
                policy_kwargs=dict(log_std_init=-2, ortho_init=False))
_DQN_LUNAR = dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0, gamma=0.99,
                  target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
                  exploration_final_eps=0.1)
_TD3_BOX2D = dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise_type="normal", noise_std=0.1,
                  gradient_steps=1, train_freq=1, learning_rate=1e-3)
_TD3_MUJOCO = dict(learning_starts=10_000, noise_type="normal", noise_std=0.1, train_freq=1, gradient_steps=1,
                   learning_rate=1e-3, batch_size=256)

ZOO: dict[str, dict[str, dict]] = {
    "PPO": {
        "CartPole-v1": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                            ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2"),
        "Pendulum-v1": dict(n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                            learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
        "LunarLander-v3": dict(_PPO_LUNAR),
        "LunarLanderContinuous-v3": dict(_PPO_LUNAR),
        "Acrobot-v1": dict(normalize=True, n_envs=16, n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4,
                           ent_coef=0.0),
        "MountainCar-v0": dict(normalize=True, n_envs=16, n_steps=16, gae_lambda=0.98, gamma=0.99, n_epochs=4,
                               ent_coef=0.0),
        "MountainCarContinuous-v0": dict(normalize=True, n_envs=1, batch_size=256, n_steps=8, gamma=0.9999,
                                         learning_rate=7.77e-05, ent_coef=0.00429, clip_range=0.1, n_epochs=10,
                                         gae_lambda=0.9, max_grad_norm=5, vf_coef=0.19, use_sde=True,
                                         policy_kwargs=dict(log_std_init=-3.29, ortho_init=False)),
        "BipedalWalker-v3": dict(normalize=True, n_envs=32, n_steps=2048, batch_size=64, gae_lambda=0.95,
                                 gamma=0.999, n_epochs=10, ent_coef=0.0, learning_rate=3e-4, clip_range=0.18),
        **_mujoco({
            "HalfCheetah": dict(normalize=True, n_envs=1, batch_size=64, n_steps=512, gamma=0.98,
                                learning_rate=2.0633e-05, ent_coef=0.000401762, clip_range=0.1, n_epochs=20,
                                gae_lambda=0.92, max_grad_norm=0.8, vf_coef=0.58096,
                                policy_kwargs=dict(log_std_init=-2, ortho_init=False)),
            "Hopper": dict(normalize=True, n_envs=1, batch_size=32, n_steps=512, gamma=0.999,
                           learning_rate=9.80828e-05, ent_coef=0.00229519, clip_range=0.2, n_epochs=5,
                           gae_lambda=0.99, max_grad_norm=0.7, vf_coef=0.835671,
                           policy_kwargs=dict(log_std_init=-2, ortho_init=False)),
            "Walker2d": dict(normalize=True, n_envs=1, batch_size=32, n_steps=512, gamma=0.99,
                             learning_rate=5.05041e-05, ent_coef=0.000585045, clip_range=0.1, n_epochs=20,
                             gae_lambda=0.95, max_grad_norm=1, vf_coef=0.871923),
            "Ant": dict(normalize=True),
        }),
    },
    "A2C": {
        "CartPole-v1": dict(n_envs=8, ent_coef=0.0),
        "LunarLander-v3": dict(n_envs=8, gamma=0.995, n_steps=5, learning_rate="lin_0.00083", ent_coef=0.00001),
        "Acrobot-v1": dict(normalize=True, n_envs=16, ent_coef=0.0),
        "MountainCar-v0": dict(normalize=True, n_envs=16, ent_coef=0.0),
        "Pendulum-v1": dict(_A2C_SDE, n_envs=8, gamma=0.9),
        "LunarLanderContinuous-v3": dict(_A2C_SDE, n_envs=4),
        "MountainCarContinuous-v0": dict(normalize=True, n_envs=4, n_steps=100, ent_coef=0.0, use_sde=True,
                                         sde_sample_freq=16, policy_kwargs=dict(log_std_init=0.0, ortho_init=False)),
        "BipedalWalker-v3": dict(_A2C_SDE, n_envs=16, learning_rate="lin_0.00096"),
        **_mujoco({name: dict(normalize=True) for name in ("HalfCheetah", "Ant", "Hopper", "Walker2d")}),
    },
    "DQN": {
        "CartPole-v1": dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
                            gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                            exploration_fraction=0.16, exploration_final_eps=0.04),
        "MountainCar-v0": dict(learning_rate=4e-3, batch_size=128, buffer_size=10_000, learning_starts=1000,
                               gamma=0.98, target_update_interval=600, train_freq=16, gradient_steps=8,
                               exploration_fraction=0.2, exploration_final_eps=0.07),
        "LunarLander-v3": dict(_DQN_LUNAR),
        "Acrobot-v1": dict(_DQN_LUNAR),
    },
    "SAC": {
        "Pendulum-v1": dict(learning_rate=1e-3),
        "MountainCarContinuous-v0": dict(learning_rate=3e-4, buffer_size=50_000, batch_size=512, ent_coef=0.1,
                                         train_freq=32, gradient_steps=32, gamma=0.9999, tau=0.01,
                                         learning_starts=0, use_sde=True, policy_kwargs=dict(log_std_init=-3.67)),
        "LunarLanderContinuous-v3": dict(batch_size=256, learning_rate="lin_7.3e-4", buffer_size=1_000_000,
                                         ent_coef="auto", gamma=0.99, tau=0.01, train_freq=1, gradient_steps=1,
                                         learning_starts=10_000),
        "BipedalWalker-v3": dict(learning_rate=7.3e-4, buffer_size=300_000, batch_size=256, ent_coef="auto",
                                 gamma=0.98, tau=0.02, train_freq=64, gradient_steps=64, learning_starts=10_000,
                                 use_sde=True, policy_kwargs=dict(log_std_init=-3)),
        **_mujoco({name: dict(learning_starts=10_000) for name in _MUJOCO[:-1]}),
        **_mujoco({"Swimmer": dict(learning_starts=10_000, gamma=0.999)}),
    },
    "TD3": {
        "Pendulum-v1": dict(_TD3_BOX2D),
        "MountainCarContinuous-v0": dict(noise_type="ornstein-uhlenbeck", noise_std=0.5, gradient_steps=1,
                                         train_freq=1, learning_rate=1e-3, batch_size=256),
        "LunarLanderContinuous-v3": dict(_TD3_BOX2D),
        "BipedalWalker-v3": dict(_TD3_BOX2D),
        **_mujoco({name: dict(_TD3_MUJOCO) for name in _MUJOCO[:-1]}),
        **_mujoco({"Swimmer": dict(_TD3_MUJOCO, gamma=0.9999)}),
    },
}

# the zoo's network where it sets one (hidden sizes, activation); elsewhere SB3's default: 64-64 tanh for
# PPO/A2C, 64-64 relu for DQN, 256-256 relu for SAC/TD3
_NET_256_RELU = ([256, 256], "relu")
NETWORKS: dict[str, dict[str, tuple[list[int], str]]] = {
    "PPO": {f"{n}-v{v}": _NET_256_RELU for n in ("HalfCheetah", "Hopper") for v in (4, 5)},
    "DQN": {k: ([256, 256], "relu") for k in ZOO["DQN"]},
    "SAC": {"MountainCarContinuous-v0": ([64, 64], "relu"), "LunarLanderContinuous-v3": ([400, 300], "relu"),
            "BipedalWalker-v3": ([400, 300], "relu")},
    "TD3": {k: ([400, 300], "relu") for k in ZOO["TD3"]},
}


def zoo_entry(algo: str, env_id: str) -> dict | None:
    """A copy of the zoo's hyperparameters of `algo` on `env_id` (None: the zoo has no entry)."""
    hp = ZOO.get(algo, {}).get(env_id)
    if hp is None:
        return None
    return {k: dict(v) if isinstance(v, dict) else v for k, v in hp.items()}


def zoo_envs(algo: str) -> list[str]:
    return sorted(ZOO.get(algo, {}))
