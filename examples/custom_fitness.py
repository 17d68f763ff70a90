"""A custom fitness function, optimized three ways: ask/tell by hand, one-call minimize in parallel
workers, and a vectorized batch function. Run: python examples/custom_fitness.py"""
import numpy as np

import evograd as eg


def styblinski_tang(x: np.ndarray) -> float:
    """A multimodal test function with its minimum -39.166 * dim at x_i = -2.9035."""
    return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x))


def main() -> None:
    dim = 8
    # 1. ask/tell by hand: full control over the loop
    opt = eg.make("cmaes", x0=np.zeros(dim), sigma0=2.0, seed=0)
    for _ in range(150):
        X = opt.ask()
        opt.tell([styblinski_tang(x) for x in X])
    print(f"cmaes ask/tell : best {opt.best.value:9.3f}  (optimum {-39.166 * dim:.3f})")

    # 2. one call, candidates evaluated in 2 worker processes (same result as n_jobs=1)
    res = eg.minimize(styblinski_tang, eg.make("snes", x0=np.zeros(dim), sigma0=2.0, seed=1),
                      max_evals=20_000, n_jobs=2)
    print(f"snes minimize  : best {res.value:9.3f}  after {res.evals} evaluations")

    # 3. a vectorized fitness takes the whole (n, dim) batch at once
    def batch(X):
        return 0.5 * np.sum(X**4 - 16 * X**2 + 5 * X, axis=1)

    P0 = np.random.default_rng(0).uniform(-5, 5, size=(50, dim))
    res = eg.minimize(batch, eg.make("cbo", x0=P0, seed=2), max_evals=50_000, vectorized=True)
    print(f"cbo vectorized : best {res.value:9.3f}  at x = {np.round(res.x, 3)}")


if __name__ == "__main__":
    main()
