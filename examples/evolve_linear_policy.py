"""Evolve a linear policy with observation normalization (the ARS / linear-policy-ES recipe) on
LunarLander-v3, in 2 worker processes, and save the best evaluated policy.

Run: python examples/evolve_linear_policy.py   (about a minute on 2 cores; more steps score higher)"""
import evograd as eg


def main() -> None:
    problem = eg.GymProblem("LunarLander-v3", policy="linear", obs_norm=True, episodes=1, seed=0, n_jobs=2)
    opt = eg.make("cmaes", x0=problem.initial_params(), sigma0=0.5, popsize=50, seed=0)
    res = eg.train(problem, opt, max_env_steps=300_000, eval_every=25_000, eval_episodes=10, progress=True)
    print(res)
    print(f"best evaluated return {res.best_eval_return:.1f} after {res.env_steps:,} training env steps "
          f"({res.eval_env_steps:,} evaluation steps counted apart)")
    problem.save_policy("lunarlander_linear.pt", res.best_x, {"method": "cmaes"})
    print("saved lunarlander_linear.pt; try: evograd eval lunarlander_linear.pt --episodes 10")


if __name__ == "__main__":
    main()
