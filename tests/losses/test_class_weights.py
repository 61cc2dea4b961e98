from __future__ import annotations

import numpy as np
import pytest
import torch

from datapipe.losses import class_weights

COUNTS = [10, 30, 0, 60]


@pytest.mark.parametrize(
    ("method", "beta", "counts", "expected"),
    [
        ("inverse", 0.999, COUNTS, [2.0, 2 / 3, 0.0, 1 / 3]),
        # freqs 0.1, 0.3, 0.6 over present classes; median 0.3 -> median / freq
        ("median_frequency", 0.999, COUNTS, [3.0, 1.0, 0.0, 0.5]),
        # E_n = (1 - β^n) / (1 - β): E_1 = 1, E_2 = 1.5 -> 1/E = 1, 2/3 -> mean 1
        ("effective_number", 0.5, [1, 2, 0], [1.2, 0.8, 0.0]),
        ("effective_number", 0.0, COUNTS, [1.0, 1.0, 0.0, 1.0]),
    ],
    ids=["inverse", "median-frequency", "effective-number-beta-0.5", "effective-number-beta-0"],
)
def test_class_weights_known_answers(
    method: str, beta: float, counts: list[int], expected: list[float]
) -> None:
    w = class_weights(counts, method=method, beta=beta)  # type: ignore[arg-type]
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_effective_number_nears_inverse_as_beta_nears_one() -> None:
    inv = class_weights(COUNTS, method="inverse")
    eff = class_weights(COUNTS, method="effective_number", beta=1 - 1e-9)
    np.testing.assert_allclose(eff, inv, rtol=1e-6)


@pytest.mark.parametrize("method", ["inverse", "effective_number"])
def test_weights_average_one_over_present_classes(method: str) -> None:
    w = class_weights([5, 0, 17, 1000, 3], method=method)  # type: ignore[arg-type]
    assert w[1] == 0.0
    assert w[[0, 2, 3, 4]].mean() == pytest.approx(1.0)
    assert np.isfinite(w).all()


def test_tensor_in_tensor_out() -> None:
    w = class_weights(torch.tensor(COUNTS), method="inverse")
    assert isinstance(w, torch.Tensor)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([2.0, 2 / 3, 0.0, 1 / 3]))


@pytest.mark.parametrize(
    ("counts", "kwargs", "match"),
    [
        ([1, -1], {}, "counts >= 0"),
        ([0, 0], {}, "at least one class"),
        ([[1, 2]], {}, "1-D"),
        ([1, 2], {"method": "sqrt"}, "expected method in"),
        ([1, 2], {"beta": 1.0}, r"beta in \[0, 1\)"),
    ],
    ids=["negative", "all-zero", "2d", "unknown-method", "beta-1"],
)
def test_bad_input_is_refused(counts: list, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        class_weights(counts, **{"method": "inverse", **kwargs})
