from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from datapipe.models import build_classifier
from datapipe.scoring.oof import Dynamics, TrainSettings, _batches, lr_at, out_of_fold


def test_lr_warmup_starts_training_and_cosine_ends_at_zero() -> None:
    lrs = [lr_at(s, total=100, warmup=10, base=0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.01)  # the first step already trains, at the warmup LR
    assert lrs[9] == pytest.approx(0.1)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))


def test_dynamics_known_answers() -> None:
    dyn = Dynamics.zeros(2)
    labels = torch.tensor([0, 1])
    dyn.add(np.array([0, 1]), torch.tensor([[2.0, 0.0], [2.0, 0.0]]), labels)
    dyn.add(np.array([0, 1]), torch.tensor([[0.0, 0.0], [0.0, 1.0]]), labels)
    s = dyn.summary()
    p_hi = 1 / (1 + np.exp(-2.0))
    p_one = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(
        s["confidence"], [(p_hi + 0.5) / 2, (1 - p_hi + p_one) / 2], rtol=1e-6
    )
    np.testing.assert_allclose(
        s["variability"], [abs(p_hi - 0.5) / 2, abs(1 - p_hi - p_one) / 2], rtol=1e-5
    )
    np.testing.assert_allclose(s["aum"], [(2.0 + 0.0) / 2, (-2.0 + 1.0) / 2])
    np.testing.assert_allclose(s["correctness"], [1.0, 0.5])  # the [0, 0] tie argmaxes to 0


def test_out_of_fold_separable_data_each_sample_held_out_once() -> None:
    rng = np.random.default_rng(0)
    n, k_folds, epochs = 120, 4, 6
    labels = np.arange(n) % 3  # 117 included: 87-88 train per fold, a tail batch of 1 or 2
    images = torch.tensor(
        labels[:, None, None, None] * 1.0 + rng.normal(0, 0.3, (n, 1, 8, 8)), dtype=torch.float32
    )
    folds = np.arange(n) % k_folds
    include = np.ones(n, bool)
    include[:3] = False
    result = out_of_fold(
        images,
        labels,
        folds,
        include,
        num_classes=3,
        make_model=lambda: build_classifier(
            "small_cnn", in_channels=1, num_classes=3, image_size=8
        ),
        settings=TrainSettings(epochs=epochs, batch_size=15, lr=0.05),
    )
    assert np.isnan(result.probs[:3]).all()
    np.testing.assert_allclose(result.probs[include].sum(1), 1.0, rtol=1e-5)
    assert (result.probs[include].argmax(1) == labels[include]).mean() >= 0.9
    # trained in every fold but its own, once per epoch: never on the fold it is scored in
    assert (result.dynamics.passes[include] == epochs * (k_folds - 1)).all()
    assert (result.dynamics.passes[~include] == 0).all()


@pytest.mark.parametrize(
    ("n", "size", "sizes"), [(10, 4, [4, 4, 2]), (9, 4, [4, 5]), (8, 4, [4, 4]), (1, 4, [1])]
)
def test_batches_never_leave_a_single_sample(n: int, size: int, sizes: list[int]) -> None:
    batches = _batches(np.arange(n), size)
    assert [len(b) for b in batches] == sizes
    assert np.array_equal(np.concatenate(batches), np.arange(n))
