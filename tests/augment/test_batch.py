from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from datapipe.augment import batch as B
from datapipe.augment.batch import (
    Box,
    MixDraw,
    MixPolicy,
    MultiScaleBatchSampler,
    apply_mix,
    average_crops,
    draw_batch_sizes,
    draw_mix,
    draw_partners,
    mix_batch,
    multi_crop,
    one_hot,
    size_range,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_module_does_not_import_albumentations() -> None:
    tree = ast.parse(Path(B.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert "albumentations" not in imported


# --- one_hot -------------------------------------------------------------------------------


def test_one_hot_known_values_with_smoothing() -> None:
    out = one_hot(torch.tensor([2, 0]), 4, smoothing=0.2)
    expected = torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(out, expected)


def test_one_hot_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match=r"expected labels in \[0, 3\), got range \[0, 3\]"):
        one_hot(torch.tensor([0, 3]), 3)


# --- draws ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [2, 3, 5, 8, 9])
def test_partners_are_a_permutation_without_fixed_points(batch_size: int) -> None:
    for seed in range(20):
        partners = draw_partners(batch_size, rng=rng(seed))
        assert sorted(partners) == list(range(batch_size))
        assert all(p != i for i, p in enumerate(partners))


def test_single_sample_is_its_own_partner() -> None:
    assert draw_partners(1, rng=rng()) == (0,)


def test_cutmix_lam_is_the_kept_area_of_the_box() -> None:
    for seed in range(30):
        draw = draw_mix(4, alpha=1.0, mode="cutmix", height=30, width=20, rng=rng(seed))
        assert draw.box is not None
        assert 0 <= draw.box.top <= draw.box.bottom <= 30
        assert 0 <= draw.box.left <= draw.box.right <= 20
        assert draw.lam == pytest.approx(1 - draw.box.area / (30 * 20))


def test_draw_is_deterministic_for_a_seed() -> None:
    a = draw_mix(6, alpha=0.4, mode="cutmix", height=16, width=16, rng=rng(7))
    b = draw_mix(6, alpha=0.4, mode="cutmix", height=16, width=16, rng=rng(7))
    assert a == b


# --- apply: classification ------------------------------------------------------------------


def test_mixup_known_answer() -> None:
    images = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    labels = torch.tensor([0, 1, 2])
    draw = MixDraw("mixup", 0.7, (1, 2, 0))
    mixed, soft = apply_mix(images, labels, draw, num_classes=3)
    torch.testing.assert_close(mixed[:, 0, 0, 0], torch.tensor([0.3, 1.3, 1.4]))
    expected = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.7, 0.3], [0.3, 0.0, 0.7]])
    torch.testing.assert_close(soft, expected)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
@pytest.mark.parametrize("batch_size", [1, 2, 5, 7])
def test_mixed_targets_sum_to_one(mode: B.MixMode, batch_size: int) -> None:
    labels = torch.arange(batch_size) % 4
    images = torch.rand(batch_size, 3, 8, 8)
    for seed in range(10):
        draw = draw_mix(batch_size, alpha=0.5, mode=mode, height=8, width=8, rng=rng(seed))
        _, soft = apply_mix(images, labels, draw, num_classes=4)
        torch.testing.assert_close(soft.sum(1), torch.ones(batch_size))
        own = soft[torch.arange(batch_size), labels]
        assert torch.all(own >= draw.lam - 1e-6)


def test_cutmix_classification_pastes_the_box_and_weights_by_area() -> None:
    images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    draw = MixDraw("cutmix", 0.75, (1, 0), Box(top=1, bottom=3, left=0, right=2))
    mixed, soft = apply_mix(images, torch.tensor([0, 1]), draw, num_classes=2)
    expected0 = torch.zeros(4, 4)
    expected0[1:3, 0:2] = 1
    torch.testing.assert_close(mixed[0, 0], expected0)
    torch.testing.assert_close(mixed[1, 0], 1 - expected0)
    torch.testing.assert_close(soft, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    assert images[0].sum() == 0  # input untouched


def test_soft_input_targets_are_mixed_as_given() -> None:
    soft_in = one_hot(torch.tensor([0, 1]), 2, smoothing=0.1)
    draw = MixDraw("mixup", 0.6, (1, 0))
    _, soft = apply_mix(torch.rand(2, 1, 2, 2), soft_in, draw)
    torch.testing.assert_close(soft, torch.tensor([[0.59, 0.41], [0.41, 0.59]]))


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_single_sample_batch_is_a_no_op(mode: B.MixMode) -> None:
    images = torch.rand(1, 3, 5, 5)
    draw = draw_mix(1, alpha=1.0, mode=mode, height=5, width=5, rng=rng(3))
    mixed, soft = apply_mix(images, torch.tensor([2]), draw, num_classes=3)
    assert torch.equal(mixed, images)
    assert torch.equal(soft, torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (MixDraw("mixup", 0.5, (0, 0)), r"expected a permutation of range\(2\)"),
        (MixDraw("cutmix", 0.5, (1, 0), Box(0, 2, 0, 2)), "expected cutmix lam = 1 - box area"),
        (MixDraw("cutmix", 0.5, (1, 0), Box(0, 9, 0, 2)), "expected a box inside 4x4"),
        (MixDraw("mixup", 1.5, (1, 0)), "expected 0 <= lam <= 1"),
    ],
    ids=["not-a-permutation", "lam-not-box-area", "box-outside", "lam-above-one"],
)
def test_apply_rejects_inconsistent_draws(draw: MixDraw, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_mix(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), draw, num_classes=2)


def test_mixup_rejects_integer_images() -> None:
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"expected floating images for mixup, got torch\.uint8"):
        apply_mix(
            images,
            torch.tensor([0, 1]),
            MixDraw("mixup", 0.5, (1, 0)),
            num_classes=2,
        )


# --- apply: segmentation --------------------------------------------------------------------


def stripes(batch_size: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample b: image pixel (y, x) = 100 b + x (vertical stripes), mask = b or 255 on x = 0."""
    xs = torch.arange(width, dtype=torch.float32)
    images = (100 * torch.arange(batch_size)[:, None, None, None] + xs).expand(
        batch_size, 2, height, width
    )
    masks = torch.arange(batch_size)[:, None, None].expand(batch_size, height, width).clone()
    masks[:, :, 0] = 255
    return images.clone(), masks.to(torch.int64)


def test_segmentation_cutmix_cuts_images_and_masks_together() -> None:
    images, masks = stripes(3, 6, 8)
    box = Box(top=1, bottom=4, left=0, right=5)
    draw = MixDraw("cutmix", 1 - box.area / 48, (2, 0, 1), box)
    out_images, out_masks = apply_mix(images, masks, draw, dense=True)
    inside = torch.zeros(6, 8, dtype=torch.bool)
    inside[1:4, 0:5] = True
    for b, partner in enumerate(draw.permutation):
        source = torch.where(inside, torch.tensor(partner), torch.tensor(b))
        expected_image = 100 * source + torch.arange(8.0)
        assert torch.equal(out_images[b, 0], expected_image)
        assert torch.equal(out_images[b, 1], expected_image)
        expected_mask = source.clone()
        expected_mask[:, 0] = 255
        assert torch.equal(out_masks[b], expected_mask)
    assert out_masks.dtype == torch.int64
    assert set(out_masks.unique().tolist()) <= set(masks.unique().tolist())


def test_segmentation_rejects_mixup() -> None:
    images, masks = stripes(2, 4, 4)
    with pytest.raises(ValueError, match="expected mode 'cutmix' for masks"):
        apply_mix(images, masks, MixDraw("mixup", 0.5, (1, 0)), dense=True)


def test_policy_with_prob_zero_leaves_images_and_smooths_labels() -> None:
    images = torch.rand(3, 1, 4, 4)
    out, soft = mix_batch(
        images,
        torch.tensor([0, 1, 1]),
        policy=MixPolicy(prob=0.0),
        rng=rng(),
        num_classes=2,
        smoothing=0.2,
    )
    assert torch.equal(out, images)
    torch.testing.assert_close(soft, torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]))


@pytest.mark.parametrize(
    ("policy", "modes"),
    [
        (MixPolicy(switch_prob=1.0), {"cutmix"}),
        (MixPolicy(switch_prob=0.0), {"mixup"}),
        (MixPolicy(cutmix_alpha=0.0, switch_prob=1.0), {"mixup"}),
        (MixPolicy(mixup_alpha=0.0), {"cutmix"}),
        (MixPolicy(switch_prob=0.5), {"mixup", "cutmix"}),
    ],
    ids=["switch-1", "switch-0", "mixup-only", "cutmix-only", "both"],
)
def test_policy_picks_modes(policy: MixPolicy, modes: set[str]) -> None:
    g = rng(1)
    drawn = {B.draw_policy(4, height=8, width=8, policy=policy, rng=g) for _ in range(50)}
    assert {d.mode for d in drawn if d is not None} == modes


def test_policy_rejects_both_alphas_zero() -> None:
    with pytest.raises(ValueError, match="expected mixup_alpha > 0 or cutmix_alpha > 0"):
        MixPolicy(mixup_alpha=0.0, cutmix_alpha=0.0)


def test_size_range_yolov3() -> None:
    sizes = size_range(320, 608, 32)
    assert sizes == [320, 352, 384, 416, 448, 480, 512, 544, 576, 608]


def test_size_range_rejects_sizes_off_the_stride() -> None:
    with pytest.raises(
        ValueError, match="expected low and high multiples of step=32, got 300, 608"
    ):
        size_range(300, 608, 32)


def test_sampler_one_size_per_batch_covering_the_list() -> None:
    sizes = size_range(320, 608, 32)
    sampler = MultiScaleBatchSampler(range(100), batch_size=4, sizes=sizes)
    batches = list(sampler)
    per_batch = [{size for _, size in batch} for batch in batches]
    assert all(len(s) == 1 for s in per_batch)
    assert set().union(*per_batch) == set(sizes)
    # shuffled rounds: each run of len(sizes) batches holds every size once
    first_round = [next(iter(s)) for s in per_batch[: len(sizes)]]
    assert sorted(first_round) == sizes


def test_sampler_covers_every_index_once_in_order() -> None:
    sampler = MultiScaleBatchSampler(range(10), batch_size=4, sizes=[32, 64])
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert len(sampler) == 3
    assert [i for b in batches for i, _ in b] == list(range(10))


def test_sampler_drop_last() -> None:
    sampler = MultiScaleBatchSampler(range(10), batch_size=4, sizes=[32], drop_last=True)
    assert len(sampler) == 2
    assert [[i for i, _ in b] for b in sampler] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_sampler_every_n_keeps_the_size_for_n_batches() -> None:
    sizes = draw_batch_sizes(23, sizes=[1, 2, 3, 4, 5], every=4, seed=0, epoch=0)
    assert len(sizes) == 23
    for start in range(0, 23, 4):
        assert len(set(sizes[start : start + 4])) == 1
    changes = [sizes[i] for i in range(0, 23, 4)]
    assert sorted(changes[:5]) == [1, 2, 3, 4, 5]


def test_sampler_sizes_depend_only_on_seed_and_epoch() -> None:
    def sizes_of(seed: int, epoch: int) -> list[int]:
        sampler = MultiScaleBatchSampler(
            range(64), batch_size=2, sizes=size_range(32, 320, 32), seed=seed
        )
        sampler.set_epoch(epoch)
        return [b[0][1] for b in sampler]

    assert sizes_of(0, 1) == sizes_of(0, 1)
    assert sizes_of(0, 1) != sizes_of(0, 2)
    assert sizes_of(0, 1) != sizes_of(1, 1)


def test_sampler_forwards_set_epoch() -> None:
    inner = DistributedSampler(range(20), num_replicas=2, rank=0, shuffle=True, seed=0)
    sampler = MultiScaleBatchSampler(inner, batch_size=3, sizes=[64])
    sampler.set_epoch(3)
    assert inner.epoch == 3
    indices = [i for b in sampler for i, _ in b]
    assert indices == list(inner)
    assert len(indices) == 10


class _ResizingDataset(torch.utils.data.Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 9

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        index, size = key
        return torch.full((1, size, size), float(index))


def test_five_crop_known_content() -> None:
    images = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8)
    crops = multi_crop(images, size=4, kind="five")
    assert crops.shape == (10, 3, 4, 4)
    for b in range(2):
        assert torch.equal(crops[b * 5 + 0], images[b, :, :4, :4])
        assert torch.equal(crops[b * 5 + 1], images[b, :, :4, 4:])
        assert torch.equal(crops[b * 5 + 2], images[b, :, 2:, :4])
        assert torch.equal(crops[b * 5 + 3], images[b, :, 2:, 4:])
        assert torch.equal(crops[b * 5 + 4], images[b, :, 1:5, 2:6])


def test_ten_crop_adds_the_flipped_crops() -> None:
    images = torch.rand(3, 1, 6, 6)
    crops = multi_crop(images, size=(3, 4), kind="ten")
    assert crops.shape == (30, 1, 3, 4)
    flipped = images.flip(-1)
    for b in range(3):
        assert torch.equal(crops[b * 10 + 0], images[b, :, :3, :4])
        assert torch.equal(crops[b * 10 + 5], flipped[b, :, :3, :4])


def test_multi_crop_rejects_crops_larger_than_the_image() -> None:
    with pytest.raises(
        ValueError, match=r"expected a crop size within the image \(6, 6\), got \(7, 7\)"
    ):
        multi_crop(torch.rand(1, 1, 6, 6), size=7, kind="five")


def test_average_crops_one_prediction_per_image() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    out = average_crops(probs, num_crops=3)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.4, 0.6]]))


def test_average_crops_of_identical_outputs_is_unchanged() -> None:
    per_image = torch.softmax(torch.rand(4, 7), dim=1)
    per_crop = per_image.repeat_interleave(10, dim=0)
    torch.testing.assert_close(average_crops(per_crop, num_crops=10), per_image)


def test_multi_crop_then_average_keeps_images_apart() -> None:
    images = torch.arange(3.0)[:, None, None, None].expand(3, 2, 8, 8)  # image b is all b
    crops = multi_crop(images, size=5, kind="ten")
    per_crop = crops.mean(dim=(1, 2, 3))[:, None]
    out = average_crops(per_crop, num_crops=B.crops_per_image("ten"))
    torch.testing.assert_close(out, torch.tensor([[0.0], [1.0], [2.0]]))


def test_average_crops_rejects_a_non_multiple() -> None:
    with pytest.raises(
        ValueError, match=r"expected outputs \(B \* 5, \.\.\.\), got shape \(7, 3\)"
    ):
        average_crops(torch.rand(7, 3), num_crops=5)
