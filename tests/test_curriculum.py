from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from datapipe.curriculum import CurriculumSampler, pacing

# index:              0    1    2    3    4    5    6    7    8    9
DIFFICULTY = np.array([0.9, 0.1, 0.5, 0.1, 0.3, 0.8, 0.0, 0.7, 0.6, 0.2])


@pytest.mark.parametrize(
    ("kind", "epoch", "expected"),
    [
        ("linear", 0, 0.2),
        ("linear", 2, 0.6),
        ("linear", 4, 1.0),
        ("linear", 9, 1.0),
        ("root", 0, 0.2),
        ("root", 2, math.sqrt(0.04 + 0.96 * 0.5)),
        ("root", 4, 1.0),
        ("none", 0, 1.0),
    ],
    ids=[
        "linear-0",
        "linear-2",
        "linear-full",
        "linear-after",
        "root-0",
        "root-2",
        "root-full",
        "none",
    ],
)
def test_pacing_known_values(kind: str, epoch: int, expected: float) -> None:
    got = pacing(epoch, kind=kind, start=0.2, full_epoch=4)  # type: ignore[arg-type]
    assert got == pytest.approx(expected)


def test_step_pacing_jumps_in_equal_steps() -> None:
    got = [pacing(e, kind="step", start=0.2, full_epoch=8, steps=4) for e in range(10)]
    assert got == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0])


def test_root_pacing_adds_data_faster_than_linear_early() -> None:
    root = pacing(1, kind="root", start=0.2, full_epoch=10)
    linear = pacing(1, kind="linear", start=0.2, full_epoch=10)
    assert root == pytest.approx(math.sqrt(0.04 + 0.096)) and root > linear


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "linear", "start": 0.0, "full_epoch": 4},
        {"kind": "linear", "start": 1.5, "full_epoch": 4},
        {"kind": "linear", "start": 0.5, "full_epoch": -1},
        {"kind": "cubic", "start": 0.5, "full_epoch": 4},
        {"kind": "step", "start": 0.5, "full_epoch": 4, "steps": 0},
    ],
    ids=["start-0", "start-above-1", "negative-full", "unknown-kind", "zero-steps"],
)
def test_pacing_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="expected"):
        pacing(0, **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    difficulty=st.lists(st.floats(0, 1), min_size=1, max_size=40),
    kind=st.sampled_from(["none", "linear", "root", "step"]),
    start=st.floats(0.01, 1.0),
    full_epoch=st.integers(0, 12),
    steps=st.integers(1, 6),
)
def test_the_selected_subset_only_grows(
    difficulty: list[float], kind: str, start: float, full_epoch: int, steps: int
) -> None:
    sampler = CurriculumSampler(
        np.array(difficulty),
        seed=0,
        pacing_kind=kind,
        start=start,  # type: ignore[arg-type]
        full_epoch=full_epoch,
        steps=steps,
    )
    fractions = [sampler.fraction(e) for e in range(full_epoch + 2)]
    assert all(start - 1e-12 <= f <= 1.0 for f in fractions)
    assert fractions[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(fractions))
    for e in range(full_epoch + 1):
        before, after = sampler.selection(e), sampler.selection(e + 1)
        assert set(before) <= set(after)
    assert sorted(sampler.selection(full_epoch)) == list(range(len(difficulty)))


def test_the_first_epoch_is_the_easiest_fraction_ties_by_index() -> None:
    sampler = CurriculumSampler(DIFFICULTY, seed=0, pacing_kind="linear", start=0.3, full_epoch=5)
    assert sampler.selection(0).tolist() == [6, 1, 3]  # 0.0, then the two 0.1s in index order
    assert sorted(sampler) == [1, 3, 6]
    assert len(sampler) == 3


def test_ceil_counts_the_easiest_fraction() -> None:
    sampler = CurriculumSampler(DIFFICULTY, seed=0, pacing_kind="linear", start=0.25, full_epoch=5)
    assert sampler.selection(0).tolist() == [6, 1, 3]  # ceil(2.5)
    assert len(sampler.selection(1)) == math.ceil((0.25 + 0.75 / 5) * 10)


def test_dropped_samples_never_appear() -> None:
    keep = np.ones(10, bool)
    keep[[6, 1, 0]] = False  # the two easiest and the hardest
    sampler = CurriculumSampler(
        DIFFICULTY,
        seed=3,
        keep=keep,
        pacing_kind="linear",
        start=0.3,
        full_epoch=2,
        oversample_alpha=2.0,
    )
    assert sampler.num_kept == 7
    assert sampler.selection(0).tolist() == [3, 9, 4]  # ceil(0.3 * 7) of the kept
    seen: set[int] = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        seen |= set(sampler)
    assert seen <= {2, 3, 4, 5, 7, 8, 9}


def test_unknown_difficulty_counts_as_the_median() -> None:
    d = np.array([0.0, np.nan, 1.0, 0.2, 0.8])  # median of the known: 0.5
    sampler = CurriculumSampler(d, seed=0, pacing_kind="linear", start=0.6, full_epoch=3)
    assert sampler.selection(0).tolist() == [0, 3, 1]


@pytest.mark.parametrize("n", [10, 7], ids=["even", "padded"])
def test_two_ranks_split_the_epoch_disjointly_with_equal_lengths(n: int) -> None:
    d = DIFFICULTY[:n]
    kwargs = {"seed": 5, "pacing_kind": "none", "oversample_alpha": 0.0}
    ranks = [CurriculumSampler(d, rank=r, world=2, **kwargs) for r in (0, 1)]  # type: ignore[arg-type]
    for s in ranks:
        s.set_epoch(2)
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == math.ceil(n / 2)
    order = ranks[0].epoch_order(2)
    assert sorted(shards[0] + shards[1]) == sorted(order.tolist())
    assert sorted(set(shards[0]) | set(shards[1])) == sorted(ranks[0].selection(2).tolist())
    if n % 2 == 0:
        assert not set(shards[0]) & set(shards[1])
    else:  # one pad: the epoch's first index again, on the last rank
        assert order[-1] == order[0] and shards[1][-1] == order[0]
        assert set(shards[0][: -0 or None]) & set(shards[1][:-1]) == set()


def test_ranks_of_a_paced_epoch_cover_its_selection() -> None:
    kwargs = {"seed": 1, "pacing_kind": "linear", "start": 0.3, "full_epoch": 4}
    ranks = [CurriculumSampler(DIFFICULTY, rank=r, world=3, **kwargs) for r in range(3)]  # type: ignore[arg-type]
    for s in ranks:
        s.set_epoch(1)
    shards = [list(s) for s in ranks]
    expected = ranks[0].selection(1)  # ceil(0.475 * 10) = 5 samples, padded to 6
    assert len(expected) == 5
    assert [len(s) for s in shards] == [2, 2, 2] == [len(s) for s in ranks]
    assert set().union(*shards) == set(expected.tolist())


def test_oversampling_draws_hard_samples_more_often() -> None:
    d = np.linspace(0.0, 1.0, 100)
    sampler = CurriculumSampler(d, seed=11, oversample_alpha=2.0, oversample_from_epoch=1)
    sampler.set_epoch(0)  # before oversampling: each sample once
    assert sorted(sampler) == list(range(100))
    counts = np.zeros(100, int)
    for epoch in range(1, 21):
        sampler.set_epoch(epoch)
        draws = list(sampler)
        assert len(draws) == len(sampler) == 100
        np.add.at(counts, draws, 1)
    expected = 2000 * (d + 1e-3) ** 2 / ((d + 1e-3) ** 2).sum()
    # of 2000 draws the hardest fifth expects 979 (49 %), the easiest fifth 15 (0.8 %)
    assert counts[-20:].sum() == pytest.approx(expected[-20:].sum(), rel=0.1)
    assert counts[:20].sum() < 40
    assert counts[-20:].sum() > 20 * counts[:20].sum()


def test_oversampling_waits_for_the_full_epoch_by_default() -> None:
    d = np.linspace(0.0, 1.0, 50)
    sampler = CurriculumSampler(
        d, seed=2, pacing_kind="linear", start=0.5, full_epoch=3, oversample_alpha=3.0
    )
    sampler.set_epoch(2)
    assert len(set(sampler)) == len(sampler)  # no repeats while pacing
    sampler.set_epoch(3)
    assert len(set(sampler)) < len(sampler) == 50


def test_same_seed_and_epoch_give_the_same_order_and_set_epoch_changes_it() -> None:
    make = lambda seed: CurriculumSampler(DIFFICULTY, seed=seed)  # noqa: E731
    a, b = make(4), make(4)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(4)
    assert list(a) != first and sorted(a) == sorted(first)
    c = make(5)
    c.set_epoch(3)
    assert list(c) != first


def test_without_shuffle_the_epoch_is_in_index_order() -> None:
    sampler = CurriculumSampler(
        DIFFICULTY, seed=0, pacing_kind="linear", start=0.5, full_epoch=2, shuffle=False
    )
    assert list(sampler) == [1, 3, 4, 6, 9]


def test_len_matches_iteration_every_epoch() -> None:
    sampler = CurriculumSampler(
        DIFFICULTY, seed=0, pacing_kind="root", start=0.1, full_epoch=5, rank=2, world=3
    )
    lengths = []
    for epoch in range(7):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == len(sampler)
        lengths.append(len(sampler))
    assert lengths == sorted(lengths) and lengths[-1] == 4


def test_a_dataloader_batches_the_curriculum() -> None:
    sampler = CurriculumSampler(DIFFICULTY, seed=0, pacing_kind="linear", start=0.5, full_epoch=2)
    loader = DataLoader(list(range(10)), batch_size=2, sampler=sampler)
    got = sorted(int(i) for batch in loader for i in batch)
    assert got == [1, 3, 4, 6, 9]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"difficulty": np.array([0.5, 1.5])}, "difficulty in"),
        ({"keep": np.array([1, 0, 1])}, "bool mask"),
        ({"keep": np.zeros(3, bool)}, "at least one kept"),
        ({"rank": 2, "world": 2}, "rank in"),
        ({"oversample_alpha": -1.0}, "oversample_alpha"),
        ({"seed": -1}, "seed"),
    ],
    ids=["difficulty-range", "keep-dtype", "keep-none", "rank", "alpha", "seed"],
)
def test_sampler_rejects_bad_input(kwargs: dict, match: str) -> None:
    args = {"difficulty": np.array([0.1, 0.2, 0.3]), "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        CurriculumSampler(**args)


def test_set_epoch_rejects_a_negative_epoch() -> None:
    sampler = CurriculumSampler(DIFFICULTY, seed=0)
    with pytest.raises(ValueError, match="expected epoch"):
        sampler.set_epoch(-1)
