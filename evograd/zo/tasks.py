"""Classification tasks for comparing zeroth-order training against backprop (examples/zo_digits.py, docs/zo/).

- `digits(seed)`: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes; the data set ships inside
  scikit-learn, nothing is downloaded), a stratified 80/20 split, every pixel standardized with the training
  split's mean and standard deviation. Needs the `sklearn` extra.
- `digits_mlp()` (64-64-10, tanh, 4,810 parameters) and `digits_cnn()` (1x8x8 -> conv 3x3 8 ch -> conv 3x3
  stride 2 16 ch -> linear 10, tanh, 3,818 parameters); both take the flat (n, 64) images.
- `synthetic(seed)`: a teacher-student problem: x ~ N(0, I_256), label argmax(W x) of a random linear teacher
  W (10 x 256); `big_mlp()` (256-3072-3072-10, ReLU, 10,260,490 parameters) is the student.
- `holdout(split)`: a validation split carved from the training rows.
- `Batches`: seeded minibatches, reshuffled every epoch; `accuracy`: test accuracy of a model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.validation import ParameterError, check_float, check_int

DIGITS_FEATURES, CLASSES = 64, 10
BIG_SIZES = (256, 3072, 3072, 10)  # the synthetic task's student: 10,260,490 parameters


@dataclass
class Split:
    """Float32 inputs (n, features) and int64 labels (n,) of a train/test split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])


def digits(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """scikit-learn's digits, split (stratified, `seed`) and standardized with the training split's statistics
    (constant pixels get a scale of 1). 1,437 training and 360 test images for the default fraction."""
    seed = check_int(seed, "seed", "digits", low=0)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ParameterError("evograd.zo.tasks.digits needs scikit-learn (the data set ships inside it): "
                             "pip install 'evograd[sklearn]'") from None
    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=test_fraction,
                                              random_state=seed, stratify=data.target)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0
    return _split((x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te)


def synthetic(seed: int = 0, n_train: int = 16384, n_test: int = 2048, features: int = BIG_SIZES[0],
              classes: int = CLASSES) -> Split:
    """Teacher-student classification: x ~ N(0, I), label argmax(W x) with W ~ N(0, 1) (classes x features),
    all drawn from `seed`. The classes are near balanced; a linear model can reach 100%."""
    seed = check_int(seed, "seed", "synthetic", low=0)
    n_train, n_test = check_int(n_train, "n_train", "synthetic", low=1), check_int(n_test, "n_test", "synthetic",
                                                                                     low=1)
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((classes, features))
    x = rng.standard_normal((n_train + n_test, features))
    y = (x @ teacher.T).argmax(axis=1)
    return _split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def holdout(split: Split, fraction: float = 0.2) -> Split:
    """A validation split carved from the training rows (the last `fraction` of them; digits' rows are already
    shuffled by the stratified split): for choosing settings without looking at the test rows."""
    fraction = check_float(fraction, "fraction", "holdout", low=0.0, high=1.0, low_inclusive=False,
                           high_inclusive=False)
    n = len(split.x_train) - max(1, round(fraction * len(split.x_train)))
    return Split(split.x_train[:n], split.y_train[:n], split.x_train[n:], split.y_train[n:])


def _split(x_tr, y_tr, x_te, y_te) -> Split:
    f, i = torch.float32, torch.int64
    return Split(torch.as_tensor(x_tr, dtype=f), torch.as_tensor(y_tr, dtype=i), torch.as_tensor(x_te, dtype=f),
                 torch.as_tensor(y_te, dtype=i))


def mlp(sizes: tuple[int, ...], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of the given sizes with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([activation()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def mlp_parameters(sizes: tuple[int, ...]) -> int:
    """Weights and biases of `mlp(sizes)`, counted without building it."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def digits_mlp(hidden: int = 64) -> nn.Sequential:
    """64-hidden-10 with tanh: 4,810 parameters at hidden=64 (torch's default initialization)."""
    return mlp((DIGITS_FEATURES, hidden, CLASSES))


def digits_cnn(channels: tuple[int, int] = (8, 16)) -> nn.Sequential:
    """(n, 64) -> 1x8x8 -> conv 3x3 pad 1 (c1) -> tanh -> conv 3x3 stride 2 pad 1 (c2, 4x4) -> tanh -> linear 10:
    3,818 parameters at channels=(8, 16)."""
    c1, c2 = channels
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, c1, 3, padding=1), nn.Tanh(),
                         nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(c2 * 16, CLASSES))


def big_mlp(sizes: tuple[int, ...] = BIG_SIZES) -> nn.Sequential:
    """The synthetic task's student, ReLU: 10,260,490 parameters at the default sizes (41 MB in float32)."""
    return mlp(sizes, nn.ReLU)


class Batches:
    """Minibatches (x, y) of `batch_size` rows, a fresh seeded permutation every epoch (a partial last batch is
    dropped). Iterating again continues the stream: each pass over it is the next epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0):
        self.x, self.y = x, y
        self.batch_size = check_int(batch_size, "batch_size", "Batches", low=1, high=len(x))
        self.generator = torch.Generator().manual_seed(check_int(seed, "seed", "Batches", low=0))

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in range(len(self)):
            idx = order[i * self.batch_size: (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]

    def forever(self):
        """Batches without end, epoch after epoch."""
        while True:
            yield from self


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of rows of x whose largest logit is the label (evaluated in batches, no autograd)."""
    right = sum(int((model(x[i: i + batch_size]).argmax(dim=1) == y[i: i + batch_size]).sum())
                for i in range(0, len(x), batch_size))
    return right / len(x)
