"""evograd.zo.fit and InPlaceMeZO: in place (no parameter copy, noise only in chunks), equal to a dense reference
computation, restoring within float rounding, unbiased, training, masks, errors, callbacks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import evograd as eg
from evograd.core.callbacks import CallbackReturnError
from evograd.core.validation import ParameterError
from evograd.zo import InPlaceMeZO
from evograd.zo.noise import Noise, direction_seed, perturb, restore_bound, slots


def dense_z(model, seed, step, direction, chunk):
    """The documented noise, materialized: tensor `index` draws from a generator seeded with direction_seed(seed,
    step, direction, index), `chunk` values per normal_ call."""
    out = []
    for index, p in enumerate(model.parameters()):
        gen = torch.Generator().manual_seed(direction_seed(seed, step, direction, index))
        n = p.numel()
        parts = [torch.empty(min(chunk, n - s), dtype=p.dtype).normal_(generator=gen) for s in range(0, n, chunk)]
        out.append(torch.cat(parts).view(p.shape))
    return out


def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 13), torch.nn.Tanh(), torch.nn.Linear(13, 2)).to(dtype)


def batch(dtype=torch.float32, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randn(n, 2, generator=g, dtype=dtype)


def mse(model, b):
    return torch.nn.functional.mse_loss(model(b[0]), b[1])


# ------------------------------------------------------------------------------------------------ in place
def test_no_parameter_copy_and_no_allocation_larger_than_a_chunk():
    """One step allocates nothing near the size of a parameter: the largest allocation torch's profiler sees is
    a few KiB (chunk buffers of 1,000 values, the batch-1 activations, the RNG state) against a 1 MiB weight."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.Linear(512, 1))
    ptrs = [p.data_ptr() for p in model.parameters()]
    x = torch.randn(1, 512)
    opt = InPlaceMeZO(model, lr=1e-3, seed=0, chunk=1000)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(2):
            opt.step(lambda: model(x).square().sum())
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < largest <= 8 * 1024, largest  # the weight is 512 * 512 * 4 = 1 MiB
    assert [p.data_ptr() for p in model.parameters()] == ptrs


def test_noise_is_drawn_in_chunks(monkeypatch):
    sizes = []
    real = torch.Tensor.normal_

    def spy(self, *args, **kwargs):
        sizes.append(self.numel())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "normal_", spy)
    model = torch.nn.Linear(300, 100)
    InPlaceMeZO(model, lr=1e-3, q=2, seed=0, chunk=256).step(lambda: model.weight.sum())
    assert sizes and max(sizes) == 256 and sum(sizes) == 2 * 4 * (30_000 + 100)  # 2 directions x 4 passes


# ------------------------------------------------------------------------------------- dense reference
def test_update_equals_a_dense_reference_computation():
    """float64, q = 3, chunk 7 (several chunks and a short tail per tensor): the projected gradients and the new
    parameters equal l+-, g_i and p - lr sum_i (g_i / q) z_i computed with the directions materialized."""
    model, b = mlp(torch.float64), batch(torch.float64)
    p0 = [p.detach().clone() for p in model.parameters()]
    lr, mu, q, chunk = 0.05, 1e-3, 3, 7
    opt = InPlaceMeZO(model, lr=lr, mu=mu, q=q, seed=11, chunk=chunk)
    for step in range(2):
        start = [p.detach().clone() for p in model.parameters()]
        out = opt.step(lambda: mse(model, b))
        ref_g, expected = [], [s.clone() for s in start]
        for i in range(q):
            z = dense_z(model, 11, step, i, chunk)
            plus = float(torch.func.functional_call(model, _named(model, [s + mu * zz for s, zz in zip(start, z)]),
                                                    (b[0],)).sub(b[1]).square().mean())
            minus = float(torch.func.functional_call(model, _named(model, [s - mu * zz for s, zz in zip(start, z)]),
                                                     (b[0],)).sub(b[1]).square().mean())
            ref_g.append((plus - minus) / (2 * mu))
            expected = [e - lr * (ref_g[-1] / q) * zz for e, zz in zip(expected, z)]
        np.testing.assert_allclose(out["projected_grads"], ref_g, rtol=1e-9)
        for p, e in zip(model.parameters(), expected):
            torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-14)
    assert not all(torch.equal(p, s) for p, s in zip(model.parameters(), p0))
    assert opt.forward_passes == 2 * 2 * q


def _named(model, tensors):
    return {name: t for (name, _), t in zip(model.named_parameters(), tensors)}


@pytest.mark.parametrize("update", ["momentum", "adam", "sign"])
def test_momentum_adam_and_sign_match_torch_optim_on_the_dense_estimate(update):
    """The chunked rules equal torch.optim.SGD(momentum) / torch.optim.Adam (and lr * sign) stepping on the dense
    estimate sum_i (g_i / q) z_i set as .grad."""
    model, b = mlp(torch.float64), batch(torch.float64)
    twin = mlp(torch.float64)
    ref = {"momentum": lambda: torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.8),
           "adam": lambda: torch.optim.Adam(twin.parameters(), lr=0.01),
           "sign": lambda: _SignSGD(twin.parameters(), lr=0.01)}[update]()
    opt = InPlaceMeZO(model, lr=0.01, q=2, seed=3, chunk=10, update=update, momentum=0.8)
    assert opt.state_multiple == {"momentum": 1, "adam": 2, "sign": 0}[update]
    for step in range(4):
        out = opt.step(lambda: mse(model, b))
        zs = [dense_z(model, 3, step, i, 10) for i in range(2)]
        for k, p in enumerate(twin.parameters()):
            p.grad = sum(g / 2 * z[k] for g, z in zip(out["projected_grads"], zs))
        ref.step()
        for p, r in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-10, atol=1e-12)


class _SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad.sign(), alpha=-group["lr"])


# ---------------------------------------------------------------------------------------------- restore
@pytest.mark.parametrize("mu", [1e-3, 1e-1])
def test_restore_is_within_three_float32_roundings(mu):
    """p + mu z - 2 mu z + mu z comes back within 3 * 2**-24 * (|p| + mu |z|) per entry (float32), about half of
    the entries not bit for bit; masked entries come back exactly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 64))
    p0 = [p.detach().clone() for p in model.parameters()]
    keep = torch.rand(256, 256) < 0.5
    params, noise = slots(model, {"0.weight": keep}, "test"), Noise(1000)
    seeds = lambda slot: direction_seed(5, 0, 0, slot.index)  # noqa: E731
    with torch.no_grad():
        for scale in (mu, -2 * mu, mu):
            perturb(params, noise, seeds, scale)
    z = dense_z(model, 5, 0, 0, 1000)
    z[0] = z[0] * keep
    for p, p_start, zz in zip(model.parameters(), p0, z):
        err = (p.detach() - p_start).abs()
        assert torch.all(err <= restore_bound(p_start, zz, mu)), (err / restore_bound(p_start, zz, mu)).max()
    assert torch.equal(model[0].weight.detach()[~keep], p0[0][~keep])
    changed = sum(int((p.detach() != s).sum()) for p, s in zip(model.parameters(), p0))
    assert 0 < changed < sum(p.numel() for p in p0)


# ------------------------------------------------------------------------------------------ unbiasedness
class Quadratic(torch.nn.Module):
    def __init__(self, d=12):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        m = torch.randn(d, d, generator=g, dtype=torch.float64)
        self.A = m @ m.T / d + torch.eye(d, dtype=torch.float64)
        self.b = torch.randn(d, generator=g, dtype=torch.float64)
        self.x = torch.nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))

    def loss(self):
        return 0.5 * self.x @ self.A @ self.x + self.b @ self.x

    def grad(self):
        return (self.A @ self.x + self.b).detach()


def _estimates(q, n, mu=0.05):
    """n one-step estimates sum_i (g_i / q) z_i at the same point, each from its own seed, and the true gradient."""
    f = Quadratic()
    x0, grad = f.x.detach().clone(), f.grad()
    out = []
    for seed in range(n):
        opt = InPlaceMeZO(f, lr=1.0, mu=mu, q=q, seed=seed)
        g = opt.step(f.loss)["projected_grads"]
        zs = [dense_z(f, seed, 0, i, opt.chunk)[0] for i in range(q)]
        for gi, z in zip(g, zs):  # central differences are exact on a quadratic: g_i = z_i . grad f
            assert gi == pytest.approx(float(z @ grad), rel=1e-9, abs=1e-12)
        out.append(sum(gi / q * z for gi, z in zip(g, zs)))
        with torch.no_grad():
            f.x.copy_(x0)
    return torch.stack(out), grad


def test_projected_gradient_is_unbiased_and_its_variance_shrinks_with_q():
    """E[g z] = grad f: over 4,000 seeds every coordinate's mean is within 4.5 standard errors of the gradient;
    E |ghat - grad|^2 = (d + 1) |grad|^2 / q for Gaussian directions, checked at q = 1 and 4 within 10%."""
    est, grad = _estimates(q=1, n=4000)
    se = est.std(dim=0) / math.sqrt(len(est))
    assert torch.all((est.mean(dim=0) - grad).abs() <= 4.5 * se), ((est.mean(dim=0) - grad) / se)
    d, norm2 = grad.numel(), float(grad @ grad)
    for q, e in ((1, est), (4, _estimates(q=4, n=1500)[0])):
        mse_q = float(((e - grad) ** 2).sum(dim=1).mean())
        assert mse_q == pytest.approx((d + 1) * norm2 / q, rel=0.1), (q, mse_q, (d + 1) * norm2 / q)


# ----------------------------------------------------------------------------------------------- training
def test_fit_reduces_the_loss_of_a_small_regression_over_seeds():
    """A 5-13-2 tanh MLP on a noisy linear target, 1,500 steps at lr 1e-2: the evaluation loss falls below 10% of
    its starting value for at least 4 of 5 seeds."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 5, generator=g)
    Y = X @ torch.randn(5, 2, generator=g) + 0.1 * torch.randn(256, 2, generator=g)
    data = [(X[i:i + 32], Y[i:i + 32]) for i in range(0, 256, 32)]
    ratios = []
    for seed in range(5):
        model = mlp(seed=seed)
        with torch.no_grad():
            start = float(mse(model, (X, Y)))
        res = eg.zo.fit(model, mse, data, lr=1e-2, steps=1500, seed=seed, eval_data=[(X, Y)])
        assert res.forward_passes == 3000 and res.steps == 1500 and res.stop_reason == "steps"
        assert len(res.history) == 1500 and res.history[-1]["eval_loss"] == res.eval["eval_loss"]
        ratios.append(res.eval["eval_loss"] / start)
    assert sum(r < 0.1 for r in ratios) >= 4, ratios


def test_epochs_eval_and_a_one_shot_iterator():
    model, b = mlp(), batch()
    res = eg.zo.fit(model, mse, [b, b, b], lr=1e-3, epochs=2, seed=0, eval_fn=lambda m: {"acc": 0.5})
    assert (res.steps, res.epochs, res.stop_reason) == (6, 2, "epochs")
    assert [("eval_acc" in r) for r in res.history] == [False, False, True, False, False, True]
    res = eg.zo.fit(model, mse, iter([b, b]), lr=1e-3, epochs=3, seed=0, eval_fn=lambda m: 1.0)
    assert (res.steps, res.epochs, res.stop_reason, res.eval) == (2, 1, "data_exhausted", {"eval": 1.0})


def test_a_non_finite_loss_skips_the_step_and_restores():
    model = mlp()
    p0 = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = eg.zo.fit(model, lambda m, b: torch.tensor(float("nan")), [0], lr=1e-3, steps=2, seed=0)
    assert all(r["skipped"] for r in res.history)
    for p, s in zip(model.parameters(), p0):
        torch.testing.assert_close(p.detach(), s, rtol=1e-6, atol=1e-9)  # restore rounding only


def test_a_loss_that_raises_leaves_the_parameters_restored():
    model, calls = mlp(), []
    p0 = [p.detach().clone() for p in model.parameters()]

    def loss():
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("data")
        return 1.0

    with pytest.raises(KeyError):
        InPlaceMeZO(model, lr=1e-3, seed=0).step(loss)
    for p, s in zip(model.parameters(), p0):
        torch.testing.assert_close(p.detach(), s, rtol=1e-6, atol=1e-9)  # restore rounding only


def test_both_passes_of_a_direction_see_the_same_random_state():
    model, draws = mlp(), []
    opt = InPlaceMeZO(model, lr=1e-3, q=2, seed=0)
    opt.step(lambda: draws.append(float(torch.rand(()))) or 0.0)
    assert draws[0] == draws[1] and draws[2] == draws[3] and draws[1] != draws[2]


def test_state_dict_continues_the_run():
    model, b = mlp(), batch()
    opt = InPlaceMeZO(model, lr=1e-2, seed=4, update="adam")
    for _ in range(2):
        opt.step(lambda: mse(model, b))
    twin = mlp()
    twin.load_state_dict(model.state_dict())
    state = opt.state_dict()
    other = InPlaceMeZO(twin, lr=1e-2, seed=0, update="adam")
    other.load_state_dict({**state, "rule": {**state["rule"], "moments": {k: tuple(t.clone() for t in v) for k, v
                                                                          in state["rule"]["moments"].items()}}})
    for _ in range(2):
        opt.step(lambda: mse(model, b))
        other.step(lambda: mse(twin, b))
    for p, r in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, r)


# -------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("update", ["sgd", "adam"])
@pytest.mark.parametrize("as_callable", [False, True])
def test_masked_entries_are_never_perturbed_nor_updated(update, as_callable):
    model, b = mlp(), batch()
    model[2].bias.requires_grad_(False)
    keep = torch.rand(13, 5, generator=torch.Generator().manual_seed(0)) < 0.3
    masks = {"0.weight": keep, "2.weight": torch.zeros(2, 13, dtype=torch.bool)}
    mask = (lambda name, p: masks.get(name)) if as_callable else masks
    p0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = []

    def loss(m, bb):
        seen.append(m[0].weight.detach()[~keep].clone())
        return mse(m, bb)

    eg.zo.fit(model, loss, [b], lr=1e-2, steps=5, seed=0, mask=mask, update=update)
    now = dict(model.named_parameters())
    assert all(torch.equal(s, p0["0.weight"][~keep]) for s in seen)
    assert torch.equal(now["0.weight"][~keep], p0["0.weight"][~keep])
    assert not torch.equal(now["0.weight"][keep], p0["0.weight"][keep])
    assert torch.equal(now["2.weight"], p0["2.weight"]) and torch.equal(now["2.bias"], p0["2.bias"])
    assert not torch.equal(now["0.bias"], p0["0.bias"])


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    ({"mask": {"0.weight": torch.ones(5, 13, dtype=torch.bool)}}, r"'0.weight' a mask of shape \(5, 13\).*\(13, 5\)"),
    ({"mask": {"0.wieght": torch.ones(13, 5, dtype=torch.bool)}}, r"names \['0.wieght'\].*0.weight"),
    ({"mask": {"2.bias": torch.ones(2)}}, r"bool tensor for parameter '2.bias'"),
    ({"mask": "0.weight"}, r"'mask' parameter of fit must be a dict"),
    ({"mu": 0.0}, r"The 'mu' parameter of fit must be a float > 0.0. Got 0.0 instead."),
    ({"lr": -1.0}, r"The 'lr' parameter of fit must be a float > 0.0"),
    ({"q": 0}, r"The 'q' parameter of fit must be an int >= 1"),
    ({"update": "rmsprop"}, r"The 'update' parameter of fit must be one of 'sgd', 'momentum', 'adam', 'sign'"),
    ({"update": "momentum", "momentum": 1.0}, r"The 'momentum' parameter of fit must be a float in the range"),
    ({"method": "mezzo"}, r"The 'method' parameter of fit must be one of 'mezo'"),
    ({"steps": None}, r"fit\(\) needs a budget: pass one of steps, epochs, max_seconds"),
    ({"callback": 3}, r"The 'callback' parameter of fit must be callable"),
])
def test_errors_name_the_parameter(kwargs, match):
    args = {"lr": 1e-3, "steps": 2, **kwargs}
    with pytest.raises(ParameterError, match=match):
        eg.zo.fit(mlp(), mse, [batch()], **args)


def test_errors_name_the_model_parameter_at_fault():
    model = mlp()
    model[0].weight.data = model[0].weight.data.T.contiguous().T
    with pytest.raises(ParameterError, match=r"parameter '0.weight' is not contiguous"):
        eg.zo.fit(model, mse, [batch()], lr=1e-3, steps=1)
    with pytest.raises(ParameterError, match=r"loss must be a scalar; got a tensor of shape \(16, 2\)"):
        eg.zo.fit(mlp(), lambda m, b: m(b[0]), [batch()], lr=1e-3, steps=1)
    with pytest.raises(ParameterError, match=r"'data' parameter of fit yielded no batch"):
        eg.zo.fit(mlp(), mse, [], lr=1e-3, steps=1)


# ----------------------------------------------------------------------------------------------- callback
def test_callback_true_stops_and_other_returns_are_errors():
    rows = []
    res = eg.zo.fit(mlp(), mse, [batch()], lr=1e-3, steps=100, seed=0,
                    callback=lambda row: rows.append(row) or row["step"] >= 3)
    assert (res.steps, res.stop_reason, len(res.history)) == (3, "callback", 3)
    assert rows == res.history and set(rows[0]) >= {"step", "epoch", "loss", "projected_grad_rms",
                                                    "forward_passes", "wall_s"}
    with pytest.raises(CallbackReturnError, match="returned 1"):
        eg.zo.fit(mlp(), mse, [batch()], lr=1e-3, steps=5, callback=lambda row: 1)


def test_fit_is_a_lazy_name_of_evograd_zo():
    assert eg.zo.fit.__module__ == "evograd.zo.training" and eg.zo.FitResult.__name__ == "FitResult"
