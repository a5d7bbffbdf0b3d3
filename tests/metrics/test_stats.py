import math

import numpy as np
import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.metrics import mean_ci, summarize


def test_mean_ci_closed_form():
    # t_{0.975, 2} = 4.302652729911275 (standard t table); s = 1, n = 3
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half, rel=1e-9) and high == pytest.approx(2 + half, rel=1e-9)
    # 90 % with n = 5: t_{0.95, 4} = 2.131846786326649
    v = torch.tensor([2.0, 4.0, 4.0, 5.0, 10.0])
    mean, low, high = mean_ci(v, confidence=0.90)
    half = 2.131846786326649 * float(np.std(v.numpy(), ddof=1)) / math.sqrt(5)
    assert mean == pytest.approx(5.0) and high - mean == pytest.approx(half, rel=1e-9)
    assert mean - low == pytest.approx(half, rel=1e-9)


@pytest.mark.parametrize("n", [3, 10])
def test_mean_ci_coverage_on_normal_data(n):
    # Coverage of the t interval is exactly 95 % for normal data. With 4000 trials the Monte-Carlo
    # standard error is sqrt(0.95 * 0.05 / 4000) = 0.0034, so allow 5 SE = 0.017. (A normal-quantile
    # interval covers only ~82 % at n = 3 and ~92 % at n = 10 with this seed, outside the band.)
    rng = np.random.default_rng(0)
    trials, mu = 4000, 3.0
    hits = 0
    for _ in range(trials):
        _, low, high = mean_ci(rng.normal(mu, 2.0, size=n))
        hits += low <= mu <= high
    se = math.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) < 5 * se


def test_mean_ci_edge_cases():
    mean, low, high = mean_ci([4.0])
    assert mean == 4.0 and math.isnan(low) and math.isnan(high)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(DiffcommError, match="empty"):
        mean_ci([])
    with pytest.raises(DiffcommError, match="NaN or infinite"):
        mean_ci([1.0, float("inf")])
    with pytest.raises(DiffcommError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


def test_summarize():
    out = summarize({"psnr": torch.tensor([30.0, 32.0, 34.0]), "ssim": [0.9], "acc": np.array([1.0, 0.0])})
    assert set(out) == {"psnr", "ssim", "acc"}
    p = out["psnr"]
    assert p["mean"] == pytest.approx(32.0) and p["n"] == 3 and p["std"] == pytest.approx(2.0)
    assert (p["ci_low"], p["ci_high"]) == pytest.approx(mean_ci([30.0, 32.0, 34.0])[1:])
    assert out["ssim"]["ci_low"] is None and out["ssim"]["std"] is None and out["ssim"]["n"] == 1
    import json

    json.dumps(out, allow_nan=False)  # plain JSON-ready numbers
    with pytest.raises(DiffcommError, match="'psnr'"):
        summarize({"psnr": torch.tensor([1.0, float("nan")])})
    with pytest.raises(DiffcommError, match="dict"):
        summarize([1.0, 2.0])
