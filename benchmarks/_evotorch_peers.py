"""EvoTorch rollout throughput on the same population as evograd's engine (bench_rollouts, bench_workers).

EvoTorch's GymNE (one env per actor, episodes one after another) and VecGymNE (the population batched over
a vector env) evaluate the very parameter rows evograd evaluates: "Linear(obs_length, act_length)" is
torch's nn.Linear, whose flat layout (weight rows, then bias) is evograd's linear-policy layout, and
observation normalization is off on both sides, so both libraries run the same episodes' worth of work.
Rates are live env steps (EvoTorch's interaction_count) per wall second over whole generations after a
warm-up generation (actor start-up and env construction). Torch runs one thread; with num_actors > 0 Ray
is started here with num_cpus = num_actors before the problem is built (outside the timing).
"""
from __future__ import annotations

import logging
import time

import numpy as np


class EvoTorchPeer:
    """One EvoTorch problem kept alive across measurements (like evograd's worker in the same benchmark)."""

    def __init__(self, env_id: str, P: np.ndarray, vec: bool = False, num_actors: int = 0):
        import torch

        torch.set_num_threads(1)
        logging.getLogger("evotorch").setLevel(logging.WARNING)
        if num_actors > 0:
            import ray

            if not ray.is_initialized():
                ray.init(num_cpus=num_actors, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
        from evotorch.neuroevolution import GymNE, VecGymNE

        cls = VecGymNE if vec else GymNE
        kw = {} if vec else {"num_actors": num_actors if num_actors > 0 else None}
        self.problem = cls(env_id, "Linear(obs_length, act_length)", observation_normalization=False,
                           num_episodes=1, **kw)
        if self.problem.solution_length != P.shape[1]:
            raise ValueError(f"EvoTorch's linear policy has {self.problem.solution_length} parameters, "
                             f"evograd's {P.shape[1]}")
        self.P, self.num_actors = P, num_actors
        self.name = cls.__name__
        self.workers = f"{num_actors} Ray actors" if num_actors > 0 else "1 process"
        t0 = time.perf_counter()
        self._generation(P[: max(8, 2 * num_actors)])  # warm-up: actors start, envs are built
        self.warmup_s = time.perf_counter() - t0

    def _generation(self, P: np.ndarray) -> float:
        import torch

        batch = self.problem.generate_batch(len(P))
        batch.set_values(torch.as_tensor(P, dtype=torch.float32))
        self.problem.evaluate(batch)
        return float(batch.evals[:, 0].mean())

    def measure(self, generations: int = 1) -> dict:
        c0, t0 = self.problem.interaction_count, time.perf_counter()
        for _ in range(generations):
            mean_return = self._generation(self.P)
        dt = time.perf_counter() - t0
        steps = self.problem.interaction_count - c0
        return {"steps_per_s": steps / dt, "steps": int(steps), "seconds": dt, "mean_return": mean_return}

    def close(self) -> None:
        if self.num_actors > 0:
            try:
                self.problem.kill_actors()
            except Exception:
                pass
            import ray

            ray.shutdown()
