"""The I2SB bridge (diffcomm.diffusion.bridge): its marginal and posterior against their closed forms on
Gaussian pairs, the sampler's endpoints, and a training step whose export rebuilds through the zoo."""

import math

import pytest
import torch

from diffcomm import zoo
from diffcomm.diffusion.bridge import (
    BridgeDenoiser,
    bridge_marginal,
    bridge_posterior,
    run_bridge_training,
    sample_bridge,
)
from diffcomm.diffusion.conditional import ChannelCondition
from diffcomm.errors import DiffcommError

N = 200_000   # samples per moment check: the standard error of a variance estimate is ≈ var·sqrt(2/N)


def _moments_close(samples, mean, var):
    m, v = float(samples.mean()), float(samples.var())
    assert abs(m - mean) < 5 * math.sqrt(var / N) + 1e-6, (m, mean)   # + float32 rounding
    assert abs(v - var) < 5 * var * math.sqrt(2 / N) + 1e-9, (v, var)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_the_marginal_has_the_closed_form_mean_and_variance(t):
    beta, x0, x1 = 0.3, torch.full((N,), -0.4), torch.full((N,), 0.8)
    x_t = bridge_marginal(x0, x1, t, beta, generator=torch.Generator().manual_seed(0))
    _moments_close(x_t, (1 - t) * -0.4 + t * 0.8, beta * t * (1 - t))


@pytest.mark.parametrize("t, s", [(1.0, 0.5), (0.8, 0.3), (0.5, 0.0), (0.3, 0.1)])
def test_a_marginal_sample_pushed_through_the_posterior_has_the_marginal_at_s(t, s):
    """q(x_s | x0, x1) = ∫ q(x_s | x0, x_t) q(x_t | x0, x1) dx_t: exact for the Brownian bridge."""
    beta, g = 0.3, torch.Generator().manual_seed(1)
    x0, x1 = torch.full((N,), 0.2), torch.full((N,), -1.0)
    x_t = bridge_marginal(x0, x1, t, beta, generator=g)
    x_s = bridge_posterior(x0, x_t, t, s, beta, generator=g)
    _moments_close(x_s, (1 - s) * 0.2 + s * -1.0, beta * s * (1 - s))


def test_on_a_gaussian_pair_the_joint_of_x0_and_x_t_has_the_closed_form_covariance():
    """x0 ~ N(0, a²), x1 = x0 + e, e ~ N(0, b²): Cov(x0, x_t) = a², Var x_t = a² + t² b² + β t (1 − t)."""
    a, b, beta, t = 0.7, 0.4, 0.2, 0.6
    g = torch.Generator().manual_seed(2)
    x0 = a * torch.randn(N, generator=g)
    x1 = x0 + b * torch.randn(N, generator=g)
    x_t = bridge_marginal(x0, x1, torch.full((N,), t), beta, generator=g)
    _moments_close(x_t, 0.0, a * a + t * t * b * b + beta * t * (1 - t))
    cov = float((x0 * x_t).mean())
    assert abs(cov - a * a) < 5 * math.sqrt((a ** 2 * (a * a + t * t * b * b + beta * t * (1 - t)) + a ** 4) / N)


def test_bad_times_are_refused():
    with pytest.raises(DiffcommError, match="0 <= s < t <= 1"):
        bridge_posterior(torch.zeros(2), torch.zeros(2), 0.3, 0.5, 0.1)


class Oracle(torch.nn.Module):
    """A bridge 'network' that returns a fixed x0 (to check the sampler's bookkeeping)."""

    def __init__(self, x0):
        super().__init__()
        self.x0, self.beta, self.calls = x0, 0.1, 0

    def forward(self, x_t, t, condition):
        self.calls += 1
        return self.x0

    @staticmethod
    def to_pixels(x):
        return (x + 1) / 2


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_the_sampler_takes_steps_evaluations_and_returns_the_last_estimate(steps):
    x0 = torch.rand(2, 1, 28, 28) * 2 - 1
    oracle = Oracle(x0)
    cond = ChannelCondition(torch.zeros(2, 1, 28, 28), torch.zeros(2), torch.zeros(2))
    out = sample_bridge(oracle, cond, steps=steps, generator=torch.Generator().manual_seed(0))
    assert oracle.calls == steps and torch.allclose(out, (x0 + 1) / 2)


def test_a_training_step_changes_the_weights_and_the_export_loads(tmp_path):
    config = {"name": "tiny-i2sb", "condition": {"init": "fmnist-prior"}, "bridge": {"beta": 0.2},
              "data": {"limit": 8},
              "train": {"steps": 2, "batch_size": 4, "checkpoint_every": 1, "snapshot_every": 1000, "threads": 1}}
    final = run_bridge_training(config, tmp_path, progress=False)
    assert final["steps"] == 2
    model = zoo.load_weights(tmp_path / "model.safetensors")
    assert isinstance(model, BridgeDenoiser) and model.beta == 0.2
    cond = ChannelCondition(torch.zeros(2, 1, 28, 28), torch.full((2,), 5.0), torch.zeros(2))
    out = sample_bridge(model, cond, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()
