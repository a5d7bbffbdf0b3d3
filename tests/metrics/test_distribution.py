import numpy as np
import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.metrics.distribution import frechet_distance, kernel_distance


def test_frechet_distance_matches_closed_form_for_gaussians():
    # Two Gaussians with diagonal covariances: FD = |mu1-mu2|^2 + sum (s1 - s2)^2 (std devs).
    gen = torch.Generator().manual_seed(0)
    n, d = 200_000, 3
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.5, 1.0, 0.5])
    mu2 = torch.tensor([1.0, 0.0, -1.0])
    a = torch.randn(n, d, generator=gen) * s1
    b = torch.randn(n, d, generator=gen) * s2 + mu2
    expected = float((mu2 ** 2).sum() + ((s1 - s2) ** 2).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.05)


def test_frechet_distance_zero_for_same_set_and_positive_for_shift():
    a = torch.randn(1000, 4, generator=torch.Generator().manual_seed(1))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(16.0, rel=1e-6)


def test_kernel_distance_unbiased_near_zero_for_same_distribution():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(2000, 8, generator=gen), torch.randn(2000, 8, generator=gen)
    mean, std = kernel_distance(a, b, subsets=20, subset_size=500)
    assert abs(mean) < 3 * std + 1e-3
    shifted, _ = kernel_distance(a, b + 1.0, subsets=20, subset_size=500)
    assert shifted > 10 * max(abs(mean), std)


def test_bad_features_raise_one_line_errors():
    with pytest.raises(DiffcommError, match="at least"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(DiffcommError, match="same d"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    bad = torch.zeros(5, 3)
    bad[0, 0] = np.nan
    with pytest.raises(DiffcommError, match="NaN"):
        frechet_distance(bad, torch.zeros(5, 3))
