"""Gymnasium ids of evograd's own environments (the repository's envs/, installed as `evograd.envs`).

Entry points are strings, so registering imports gymnasium but not the environments: `import evograd.gym`
(which every evograd trainer imports) makes gym.make("evograd/LQR-v0") work and the environment module
loads on the first make. `import evograd.envs` registers too, for gymnasium's "evograd.envs:evograd/LQR-v0"
form. No max_episode_steps: each environment truncates at its own `horizon` kwarg, which a registered
TimeLimit would silently override.
"""
from __future__ import annotations

import gymnasium

ENV_IDS = {
    "evograd/LQR-v0": "evograd.envs.lqr:LQREnv",
}


def register_envs() -> None:
    """Register every id once; a second call (or re-import) leaves the registry, and its warnings, alone."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)

