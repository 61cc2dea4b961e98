from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from datapipe.optim import (
    Plateau,
    Schedule,
    autocast,
    build_optimizer,
    clip_gradients,
    make_ema,
    param_groups,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4))
        self.neck = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.head_cls = nn.Linear(4, 2, bias=False)


def _by_name(groups: list[dict]) -> dict[str, tuple[float, float]]:
    """parameter name -> (lr, weight_decay) of its group."""
    return {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["param_names"]}


def _sgd_schedule(**kwargs: object) -> tuple[torch.optim.Optimizer, Schedule]:
    model = nn.Linear(2, 2)
    groups = param_groups(model, lr=0.1, weight_decay=0.01, decay_norm_bias=True)
    optimizer = build_optimizer(groups, name="sgd")
    return optimizer, Schedule(optimizer, **kwargs)  # type: ignore[arg-type]


def lr_factor(step: int, *, kind: str = "cosine", **kwargs: object) -> float:
    """The schedule's LR factor at ``step``: one group of base LR 0.1 stepped there."""
    optimizer, schedule = _sgd_schedule(kind=kind, **kwargs)
    schedule.step(step)
    return float(optimizer.param_groups[0]["lr"]) / 0.1


# --------------------------------------------------------------------------- schedules


def test_first_warmup_step_runs_at_the_warmup_lr() -> None:
    assert lr_factor(0, total=100, warmup=10, warmup_start=0.1) == pytest.approx(0.1)
    optimizer, _ = _sgd_schedule(kind="cosine", total=100, warmup=10, warmup_start=0.1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1)  # not 0.1


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.1), (5, 0.55), (10, 1.0), (55, 0.5 + 0.5 * 0.1), (100, 0.1), (150, 0.1)],
    ids=["warmup-start", "warmup-mid", "warmup-end", "cosine-mid", "cosine-end", "past-end"],
)
def test_cosine_known_values(step: int, expected: float) -> None:
    got = lr_factor(step, total=100, warmup=10, warmup_start=0.1, min_factor=0.1)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 1.0), (29, 1.0), (30, 0.1), (59, 0.1), (60, 0.01), (99, 0.01)],
    ids=["start", "before-1st", "at-1st", "before-2nd", "at-2nd", "end"],
)
def test_step_known_values(step: int, expected: float) -> None:
    got = lr_factor(step, total=100, kind="step", milestones=(30, 60), gamma=0.1)
    assert got == pytest.approx(expected)


def test_constant_is_one_after_warmup() -> None:
    factors = [
        lr_factor(s, total=10, warmup=2, kind="constant", warmup_start=0.5) for s in (0, 1, 2, 9)
    ]
    assert factors == pytest.approx([0.5, 0.75, 1.0, 1.0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "step", "milestones": (50, 200)},  # beyond total: epochs given as iterations?
        {"kind": "step", "milestones": ()},
        {"kind": "cosine", "milestones": (50,)},
        {"kind": "cosine", "warmup": 101},
        {"kind": "step", "milestones": (50,), "min_factor": 0.1},
    ],
    ids=[
        "milestone-past-total",
        "no-milestones",
        "milestones-on-cosine",
        "warmup",
        "min",
    ],
)
def test_schedule_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="expected"):
        lr_factor(0, total=100, **kwargs)


# --------------------------------------------------------------------------- param groups


def test_norms_and_biases_get_no_weight_decay_and_head_gets_its_multiplier() -> None:
    groups = param_groups(Net(), lr=0.1, weight_decay=1e-4, lr_mult={"head": 10.0})
    got = _by_name(groups)
    assert got["backbone.0.weight"] == pytest.approx((0.1, 1e-4))  # conv weight decays
    for name in (
        "backbone.0.bias",
        "backbone.1.weight",
        "backbone.1.bias",
        "backbone.2.weight",
        "neck.weight",
        "neck.bias",
    ):
        assert got[name] == pytest.approx((0.1, 0.0)), name
    assert got["head.weight"] == pytest.approx((1.0, 1e-4))
    assert got["head.bias"] == pytest.approx((1.0, 0.0))
    assert got["head_cls.weight"] == pytest.approx((1.0, 1e-4))
    assert {g["lr_mult"] for g in groups} == {1.0, 10.0}
    assert all(g["base_lr"] == g["lr"] for g in groups)


def test_the_longest_matching_key_wins() -> None:
    groups = param_groups(Net(), lr=0.1, weight_decay=0.0, lr_mult={"head": 10.0, "head_cls": 2.0})
    got = _by_name(groups)
    assert got["head.weight"][0] == pytest.approx(1.0)
    assert got["head_cls.weight"][0] == pytest.approx(0.2)


def test_an_unknown_lr_mult_key_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'haed'"):
        param_groups(Net(), lr=0.1, weight_decay=0.0, lr_mult={"haed": 10.0})


def test_equally_long_matching_keys_are_an_error() -> None:
    with pytest.raises(ValueError, match="longest"):
        param_groups(Net(), lr=0.1, weight_decay=0.0, lr_mult={"head": 2.0, "_cls": 3.0})


def test_decay_norm_bias_decays_everything_and_frozen_params_are_left_out() -> None:
    net = Net()
    net.head.requires_grad_(False)
    got = _by_name(param_groups(net, lr=0.1, weight_decay=1e-4, decay_norm_bias=True))
    assert {wd for _, wd in got.values()} == {1e-4}
    assert "head.weight" not in got and "head.bias" not in got
    assert len(got) == sum(p.requires_grad for p in net.parameters())


def test_build_optimizer_keeps_each_groups_lr_and_decay() -> None:
    groups = param_groups(Net(), lr=0.1, weight_decay=1e-4, lr_mult={"head": 10.0})
    sgd = build_optimizer(groups, name="sgd")
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] is True and sgd.param_groups[0]["momentum"] == 0.9
    assert sorted((g["lr"], g["weight_decay"]) for g in sgd.param_groups) == [
        (0.1, 0.0),
        (0.1, 1e-4),
        (1.0, 0.0),
        (1.0, 1e-4),
    ]
    groups = param_groups(Net(), lr=1e-3, weight_decay=0.05)
    adamw = build_optimizer(groups, name="adamw")
    assert isinstance(adamw, torch.optim.AdamW)
    assert sorted(g["weight_decay"] for g in adamw.param_groups) == [0.0, 0.05]


def test_build_optimizer_rejects_an_unknown_name() -> None:
    groups = param_groups(Net(), lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="expected name"):
        build_optimizer(groups, name="adam")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Schedule


def test_schedule_lr_drives_the_sgd_update() -> None:
    """Nesterov's first step moves by lr * (1 + momentum) * grad, at the scheduled lr."""
    param = nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer([{"params": [param], "lr": 0.1, "weight_decay": 0.0}], name="sgd")
    schedule = Schedule(optimizer, kind="cosine", total=10, warmup=4, warmup_start=0.25)
    schedule.step(0)
    param.grad = torch.tensor([1.0, -2.0])
    optimizer.step()
    torch.testing.assert_close(param.detach(), -0.1 * 0.25 * 1.9 * torch.tensor([1.0, -2.0]))


def test_schedule_scales_each_group_by_its_multiplier() -> None:
    groups = param_groups(Net(), lr=0.1, weight_decay=0.0, lr_mult={"head": 10.0})
    optimizer = build_optimizer(groups, name="sgd")
    schedule = Schedule(optimizer, kind="step", total=100, milestones=(50,), gamma=0.5)
    schedule.step(60)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.05, 0.05, 0.5, 0.5])


def test_plateau_with_tied_decay_halves_lr_and_weight_decay() -> None:
    optimizer, schedule = _sgd_schedule(
        kind="plateau", total=100, gamma=0.5, plateau=Plateau(patience=0), tie_weight_decay=True
    )
    group = optimizer.param_groups[0]
    schedule.step(40)
    assert (group["lr"], group["weight_decay"]) == pytest.approx((0.1, 0.01))
    assert schedule.step_metric(1.0) is False  # the first value is the best so far
    assert schedule.step_metric(1.0) is True  # no improvement, patience 0
    assert (group["lr"], group["weight_decay"]) == pytest.approx((0.05, 0.005))
    schedule.step(41)
    assert (group["lr"], group["weight_decay"]) == pytest.approx((0.05, 0.005))
    assert schedule.scale == pytest.approx([0.5])


def test_plateau_reductions_keep_the_warmup_ramp_and_stop_at_the_floor() -> None:
    optimizer, schedule = _sgd_schedule(
        kind="plateau",
        total=100,
        warmup=10,
        warmup_start=0.1,
        gamma=0.5,
        min_factor=0.3,
        plateau=Plateau(mode="max", patience=0),
    )
    for _ in range(4):  # "max": a constant metric never improves after the first
        schedule.step_metric(0.7)
    assert schedule.scale == pytest.approx([0.3])  # 1 -> 0.5 -> 0.3 (floor) -> 0.3
    schedule.step(0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1 * 0.3)


def test_tied_weight_decay_follows_the_cosine_but_not_the_warmup() -> None:
    optimizer, schedule = _sgd_schedule(
        kind="cosine", total=20, warmup=10, warmup_start=0.5, tie_weight_decay=True
    )
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == pytest.approx((0.05, 0.01))
    schedule.step(15)
    assert (group["lr"], group["weight_decay"]) == pytest.approx((0.05, 0.005))


def test_schedule_state_round_trips() -> None:
    opt_a, a = _sgd_schedule(kind="plateau", total=100, gamma=0.5, plateau=Plateau(patience=1))
    for value in (1.0, 1.0, 1.0, 0.5, 0.6):  # reduce once, then a new best, then one bad epoch
        a.step_metric(value)
    opt_b, b = _sgd_schedule(kind="plateau", total=100, gamma=0.5, plateau=Plateau(patience=1))
    b.load_state_dict(a.state_dict())
    assert b.scale == a.scale == pytest.approx([0.5])
    assert opt_b.param_groups[0]["lr"] == pytest.approx(0.05)
    # the plateau's counters came too: one more bad epoch reduces both
    assert a.step_metric(0.6) is True and b.step_metric(0.6) is True
    assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"] == pytest.approx(0.025)


def test_schedule_state_of_another_kind_is_refused() -> None:
    _, plateau = _sgd_schedule(kind="plateau", total=10)
    _, cosine = _sgd_schedule(kind="cosine", total=10)
    with pytest.raises(ValueError, match="expected a 'cosine' schedule state"):
        cosine.load_state_dict(plateau.state_dict())


def test_step_metric_needs_a_plateau_schedule() -> None:
    _, schedule = _sgd_schedule(kind="cosine", total=10)
    with pytest.raises(ValueError, match="kind='plateau'"):
        schedule.step_metric(1.0)


def test_plateau_options_on_another_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="plateau options"):
        _sgd_schedule(kind="cosine", total=10, plateau=Plateau(patience=3))


# --------------------------------------------------------------------------- step helpers


def test_clip_returns_the_norm_before_clipping_and_clips() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])
    assert clip_gradients([a, b], max_norm=1.0) == pytest.approx(5.0)
    assert float(torch.cat([a.grad, b.grad]).norm()) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.8]))


@pytest.mark.parametrize("max_norm", [None, 0.0], ids=["none", "zero"])
def test_clip_disabled_only_measures(max_norm: float | None) -> None:
    a = nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients([a], max_norm=max_norm) == pytest.approx(5.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 4.0]))


def test_ema_with_decay_half_averages_weights_and_buffers() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    ema = make_ema(model, decay=0.5)
    with torch.no_grad():
        for value in (2.0, 4.0, 8.0):
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
            ema.update_parameters(model)
    # the first update copies (2); then 0.5 * 2 + 0.5 * 4 = 3; then 0.5 * 3 + 0.5 * 8 = 5.5
    assert float(ema.module[0].weight.detach()) == pytest.approx(5.5)
    assert float(ema.module[1].running_mean) == pytest.approx(5.5)
    assert float(model[0].weight.detach()) == 8.0


def test_autocast_does_nothing_on_cpu() -> None:
    x = torch.ones(2, 2)
    with autocast("cpu", enabled=True):
        assert (x @ x).dtype == torch.float32


@pytest.mark.gpu
def test_autocast_on_cuda_is_bfloat16() -> None:
    x = torch.ones(2, 2, device="cuda")
    with autocast("cuda"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("cuda", dtype="float16"):
        assert (x @ x).dtype == torch.float16
    with autocast("cuda", enabled=False):
        assert (x @ x).dtype == torch.float32


def test_cosine_factor_is_within_bounds_and_non_increasing_after_warmup() -> None:
    factors = [lr_factor(s, total=50, warmup=5, min_factor=0.05) for s in range(5, 60)]
    assert all(0.05 - 1e-12 <= f <= 1.0 for f in factors)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(factors))
    assert math.isclose(factors[0], 1.0)


def test_cpu_bf16_autocast_only_when_asked_and_bf16_units_read_from_the_cpu_flags(
    tmp_path,
) -> None:
    from datapipe.optim import autocast, cpu_has_bf16

    x = torch.ones(2, 4)
    layer = torch.nn.Linear(4, 3)
    with autocast("cpu", enabled=True):
        assert layer(x).dtype == torch.float32  # amp alone: CUDA only
    with autocast("cpu", enabled=False, cpu=True):
        assert layer(x).dtype == torch.bfloat16
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    assert cpu_has_bf16(info)
    info.write_text("flags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert not cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "absent")
