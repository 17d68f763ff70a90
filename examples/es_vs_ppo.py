"""An evolution strategy and PPO on the same task, the same linear policy and the same env-step budget.

Run: python examples/es_vs_ppo.py   (about 20 s)"""
import evograd as eg

BUDGET = 60_000


def main() -> None:
    problem = eg.GymProblem("CartPole-v1", policy="linear", seed=0)
    es = eg.train(problem, eg.make("snes", x0=problem.initial_params(), seed=0), max_env_steps=BUDGET,
                  eval_every=5_000, eval_episodes=10)
    ppo = eg.train_ppo("CartPole-v1", policy="linear", seed=0, max_env_steps=BUDGET, n_envs=8, n_steps=32,
                       batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, learning_rate="lin_1e-3",
                       clip_range="lin_0.2", eval_every=5_000, eval_episodes=10)
    for name, res in (("snes", es), ("ppo", ppo)):
        first = next((r for r in res.history if r["eval_return"] >= 475), None)
        when = f"{first['env_steps']:,} steps / {first['wall_s']:.1f} s" if first else "not reached"
        print(f"{name:5s} best eval {res.best_eval_return:6.1f}   475 reached at: {when}")


if __name__ == "__main__":
    main()
