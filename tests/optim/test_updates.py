"""The numpy update rules the ES mean updates use follow torch.optim's formulas (so moving OpenAI-ES off
torch.optim changed no result beyond rounding), and round-trip their state."""
import numpy as np
import pytest

from evograd.core.serialization import dumps, loads
from evograd.core.validation import ParameterError
from evograd.optim.updates import SGD, Adam, make_rule

torch = pytest.importorskip("torch")

CASES = [
    (Adam, torch.optim.Adam, {}),
    (Adam, torch.optim.Adam, {"betas": (0.5, 0.9), "eps": 1e-4, "weight_decay": 0.01}),
    (SGD, torch.optim.SGD, {}),
    (SGD, torch.optim.SGD, {"momentum": 0.9}),
    (SGD, torch.optim.SGD, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("ours, theirs, kw", CASES)
def test_update_rules_follow_torch_optim(ours, theirs, kw):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=7)
    grads = rng.normal(size=(60, 7)) * np.logspace(-3, 1, 60)[:, None]
    rule, x = ours(0.05, **kw), x0.copy()
    p = torch.tensor(x0.copy(), requires_grad=True)
    opt = theirs([p], lr=0.05, **kw)
    for g in grads:
        x = rule.step(x, g)
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(x, p.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(x, x0)


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_rule_state_round_trips(cls):
    kw = {"momentum": 0.9} if cls is SGD else {}
    a, b = cls(0.1, **kw), cls(0.1, **kw)
    x = np.ones(3)
    for k in range(5):
        x = a.step(x, np.full(3, float(k)))
    b.load_state_dict(loads(dumps(a.state_dict())))
    g = np.array([0.3, -1.0, 2.0])
    assert np.array_equal(a.step(x, g), b.step(x, g))


def test_unknown_rule_settings_are_refused_naming_them():
    with pytest.raises(ParameterError, match="momentum"):
        make_rule("adam", 0.1, "OpenAIES", momentum=0.9)
    with pytest.raises(ParameterError, match="nesterov"):
        SGD(0.1, nesterov=True)
