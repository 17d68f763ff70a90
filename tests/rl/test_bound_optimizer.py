"""The protocol's gradient optimizers bound to a module's parameters: the fast path PPO and REINFORCE step
through (no float64 copies, torch's fused Adam) gives torch.optim's numbers, keeps the protocol's checks,
and the trainers' denormal flushing is confined to the run."""
import numpy as np
import pytest
import torch

import evograd as eg
from evograd import ParameterError
from evograd.rl.ppo import train_ppo


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 5, generator=g), torch.randn(64, 2, generator=g)


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def _loss(net, X, y):
    return ((net(X) - y) ** 2).mean()


@pytest.mark.parametrize("name, kw", [("adam", dict(lr=0.01, eps=1e-5)), ("sgd", dict(lr=0.05, momentum=0.9))])
def test_bound_steps_equal_torch_optim(name, kw):
    X, y = _data()
    ours, ref = _net(), _net()
    opt = eg.make(name, **kw).bind(ours.parameters())
    torch_opt = (torch.optim.Adam if name == "adam" else torch.optim.SGD)(ref.parameters(), **kw)
    for _ in range(50):
        opt.ask_candidates()
        ours.zero_grad()
        loss = _loss(ours, X, y)
        loss.backward()
        opt.tell(loss.item())
        torch_opt.zero_grad()
        _loss(ref, X, y).backward()
        torch_opt.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    # a bound tell clears the gradients it stepped on, as zero_grad(set_to_none=True) does
    assert all(p.grad is None for p in ours.parameters())


def test_bound_ask_reads_the_parameters_and_best_is_the_point_told():
    X, y = _data(1)
    net = _net(1)
    opt = eg.make("adam", lr=0.05).bind(net.parameters())
    asked, losses = [], []
    for _ in range(20):
        asked.append(opt.ask()[0].copy())
        np.testing.assert_array_equal(opt.ask()[0], asked[-1])  # idempotent until told
        net.zero_grad()
        loss = _loss(net, X, y)
        loss.backward()
        losses.append(loss.item())
        opt.tell(loss.item())
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).double().numpy()
    np.testing.assert_array_equal(opt.center, flat)
    i = int(np.argmin(losses))
    assert opt.best.value == losses[i]
    np.testing.assert_array_equal(opt.best.x, asked[i])  # the parameters at that tell, before its step


def test_bound_tell_refuses_nonfinite_grads_and_leaves_the_parameters():
    X, y = _data(2)
    net = _net(2)
    opt = eg.make("adam", lr=0.05).bind(net.parameters())
    before = [p.detach().clone() for p in net.parameters()]
    opt.ask_candidates()
    _loss(net, X, y).backward()
    net[2].bias.grad[1] = float("nan")
    with pytest.raises(ParameterError, match=r"Adam.tell\(\) contain NaN or inf"):
        opt.tell(1.0)
    for p, q in zip(net.parameters(), before):
        assert torch.equal(p.detach(), q)
    # an inf that a sum would overflow on is still caught elementwise; huge finite values pass
    opt2 = eg.make("sgd", lr=1e-40).bind([torch.nn.Parameter(torch.zeros(4))])
    p = opt2.params[0]
    p.grad = torch.full((4,), 3e38)  # finite, but its sum overflows float32
    opt2.ask_candidates()
    opt2.tell(0.0)
    p.grad = torch.tensor([0.0, float("inf"), 1.0, 2.0])
    opt2.ask_candidates()
    with pytest.raises(ParameterError, match="NaN or inf"):
        opt2.tell(0.0)


def test_bound_maximize_climbs():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = eg.make("sgd", lr=0.1, maximize=True).bind([p])
    p.grad = torch.tensor([1.0, -2.0, 0.5])
    opt.ask_candidates()
    opt.tell(0.0)
    torch.testing.assert_close(p.detach(), torch.tensor([0.1, -0.2, 0.05]))


def _flushes() -> bool:
    return bool(torch.tensor([1e-39], dtype=torch.float32).mul(1.0) == 0)


@pytest.mark.parametrize("threads", [1, 2])
def test_training_flushes_denormals_only_while_it_runs_on_one_thread(threads):
    assert not _flushes()
    seen = []
    before = torch.get_num_threads()
    train_ppo("CartPole-v1", seed=0, max_env_steps=256, n_envs=2, n_steps=64, batch_size=64, n_epochs=1,
              eval_every=10**9, eval_episodes=1, torch_threads=threads, callback=lambda row: seen.append(_flushes()))
    assert seen and all(seen) == (threads == 1) and any(seen) == (threads == 1)
    assert not _flushes() and torch.get_num_threads() == before


def test_a_loaded_state_keeps_this_optimizers_kernel():
    X, y = _data(3)
    net = _net(3)
    opt = eg.make("adam", lr=0.01).bind(net.parameters())
    fused = opt._opt.param_groups[0]["fused"]
    for _ in range(3):
        opt.ask_candidates()
        net.zero_grad()
        _loss(net, X, y).backward()
        opt.tell(1.0)
    state = opt.state_dict()
    for g in state["algorithm"]["param_groups"]:  # as a state saved by the other kernel says
        g["fused"], g["foreach"] = (None if fused else True), None
    net2 = _net(4)
    opt2 = eg.make("adam", lr=0.01).bind(net2.parameters())
    opt2.load_state_dict(state)
    assert opt2._opt.param_groups[0]["fused"] == fused
    np.testing.assert_array_equal(opt2.ask(), opt.ask())
    opt2.ask_candidates()
    net2.zero_grad()
    _loss(net2, X, y).backward()
    opt2.tell(1.0)  # steps with its own kernel
