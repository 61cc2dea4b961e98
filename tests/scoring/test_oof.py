from __future__ import annotations

import numpy as np
import pytest
import torch

from datapipe.models import build_classifier
from datapipe.scoring.oof import Dynamics, TrainSettings, _batches, out_of_fold


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
        settings=TrainSettings.of(epochs=epochs, batch_size=15, lr=0.05),
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


class _Collect:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.shapes: set[tuple[int, ...]] = set()
        self.correct = 0
        self.counted = 0

    def add(self, index: np.ndarray, probs: np.ndarray, targets: np.ndarray) -> None:
        self.seen += index.tolist()
        self.shapes.add(probs.shape[1:])
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-4)
        valid = targets != 255
        self.correct += int((probs.argmax(1) == targets)[valid].sum())
        self.counted += int(valid.sum())


def _stripes(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright columns are class 1; a band of 255 (ignore) hides two columns per image."""
    targets = np.zeros((n, 12, 12), np.int64)
    for i in range(n):
        lo = rng.integers(0, 8)
        targets[i, :, lo : lo + 4] = 1
        targets[i, :, (lo + 6) % 12] = 255
    images = (targets == 1)[:, None] * 1.0 + rng.normal(0, 0.3, (n, 1, 12, 12))
    return torch.tensor(images, dtype=torch.float16), torch.tensor(targets)


def test_segmentation_out_of_fold_streams_every_included_image_once() -> None:
    from datapipe.models import build_segmenter
    from datapipe.scoring.data import InMemory

    rng = np.random.default_rng(1)
    images, targets = _stripes(36, rng)
    include = np.ones(36, bool)
    include[5] = False
    sink = _Collect()
    result = out_of_fold(
        InMemory(images, targets),
        None,
        np.arange(36) % 3,
        include,
        num_classes=2,
        make_model=lambda: build_segmenter("unet", in_channels=1, num_classes=2),
        settings=TrainSettings.of(epochs=6, batch_size=8, lr=0.05, ignore_index=255),
        sink=sink,
    )
    assert sorted(sink.seen) == [i for i in range(36) if i != 5]
    assert sink.shapes == {(2, 12, 12)}
    assert result.probs is None and result.dynamics is None
    assert sink.correct / sink.counted >= 0.9  # ignored pixels are not counted
    assert sink.counted == 35 * 12 * 11


def test_scoring_and_training_step_through_the_one_loop() -> None:
    import datapipe.loop
    import datapipe.scoring.oof
    import datapipe.training

    assert datapipe.scoring.oof.fit is datapipe.loop.fit
    assert datapipe.training.fit is datapipe.loop.fit


def test_the_score_recipes_loss_is_the_one_trained() -> None:
    """Focal loss (gamma 2) is below cross-entropy on every sample, so the same folds trained
    with it end with a lower loss; class weights and label smoothing reach the scorer the same
    way (``datapipe.losses.criterion``, which the train stage uses too)."""
    from datapipe.config import LossParams

    rng = np.random.default_rng(1)
    labels = np.arange(60) % 3
    images = torch.tensor(
        labels[:, None, None, None] * 1.0 + rng.normal(0, 1.0, (60, 1, 8, 8)), dtype=torch.float32
    )

    def run(loss: LossParams) -> dict[int, float]:
        return out_of_fold(
            images, labels, np.arange(60) % 3, np.ones(60, bool), num_classes=3,
            make_model=lambda: build_classifier("small_cnn", in_channels=1, num_classes=3,
                                                image_size=8),
            settings=TrainSettings.of(epochs=2, batch_size=10, loss=loss),
        ).train_loss  # fmt: skip

    ce, focal = run(LossParams()), run(LossParams(terms={"loss_focal": 1.0}))
    assert all(focal[k] < ce[k] for k in ce)


def test_channels_last_on_the_cpu_reaches_the_model_and_keeps_the_probabilities() -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(48) % 2
    images = torch.tensor(labels[:, None, None, None] + rng.normal(0, 0.3, (48, 3, 8, 8)),
                          dtype=torch.float32)  # fmt: skip
    seen: list[bool] = []

    def make_model() -> torch.nn.Module:
        model = build_classifier("small_cnn", in_channels=3, num_classes=2, image_size=8)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        first.register_forward_pre_hook(
            lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        return model

    def run(channels_last: bool | None) -> np.ndarray:
        seen.clear()
        result = out_of_fold(
            images, labels, np.arange(48) % 3, np.ones(48, bool), num_classes=2,
            make_model=make_model,
            settings=TrainSettings.of(epochs=2, batch_size=8, lr=0.05,
                                      channels_last=channels_last),
        )  # fmt: skip
        return result.probs

    plain = run(None)  # CPU: the default keeps contiguous batches
    assert seen and not any(seen)
    nhwc = run(True)
    assert seen and all(seen)
    np.testing.assert_allclose(nhwc, plain, atol=1e-4)
