"""Flow-matching prior: velocity ↔ x̂0 exact on Gaussian data, the flow ODE, training, receivers, zoo rebuild."""

import json

import pytest
import torch

from diffcomm.diffusion.flow import FlowDenoiser, flow_loss, sample_t, sigma_to_t, t_to_sigma
from diffcomm.diffusion.gaussian import GaussianDenoiser
from diffcomm.diffusion.unet import UNet, UNetConfig
from diffcomm.errors import DiffcommError

torch.set_num_threads(1)
F64 = torch.float64


def gaussian_velocity(mu: torch.Tensor, var: torch.Tensor):
    """Exact v*(x_t, t) = E[ε − x0 | x_t] for x0 ~ N(μ, diag(var)), derived in t-space.

    x_t ~ N((1 − t) μ, V) with V = (1 − t)² var + t², Cov(x0, x_t) = (1 − t) var, Cov(ε, x_t) = t, so
    E[ε − x0 | x_t] = (t − (1 − t) var) / V · (x_t − (1 − t) μ) − μ.
    """
    def v(x_t, t, class_labels=None):
        flat = x_t.reshape(x_t.shape[0], -1)
        tt = t.reshape(-1, 1).to(flat.dtype)
        big_v = (1 - tt) ** 2 * var + tt ** 2
        return ((tt - (1 - tt) * var) / big_v * (flat - (1 - tt) * mu) - mu).reshape(x_t.shape)
    return v


def gaussian_case(d: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g, dtype=F64) * 0.5
    var = torch.rand(d, generator=g, dtype=F64) * 0.5 + 0.05
    return mu, var


@pytest.mark.parametrize("sigma", [0.002, 0.05, 0.5, 1.0, 5.0, 80.0])
def test_flow_denoiser_on_the_exact_gaussian_velocity_is_the_gaussian_posterior_mean(sigma):
    """x̂0 = x_t − t v*(x_t, t) at t = σ/(1+σ), x_t = x/(1+σ) equals E[x0 | x0 + σ ε] (GaussianDenoiser)."""
    mu, var = gaussian_case()
    flow = FlowDenoiser(gaussian_velocity(mu, var))
    exact = GaussianDenoiser(mu, torch.diag(var))
    x = (exact.sample(5, torch.Generator().manual_seed(1), sigma=sigma)).reshape(5, 1, 2, 3)
    torch.testing.assert_close(flow(x, torch.tensor(sigma, dtype=F64)), exact(x, sigma), rtol=1e-12, atol=1e-12)
    per_sample = torch.full((5,), sigma, dtype=F64)
    torch.testing.assert_close(flow(x, per_sample), exact(x, per_sample), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.05, 1.0, 10.0])
def test_velocity_x0_eps_and_score_conversions_are_exact_on_the_gaussian(sigma):
    """From the flow's x̂0 at x = x0 + σε: ε̂ = (x − x̂0)/σ, score = (x̂0 − x)/σ² (Tweedie) and back
    v = (x_t − x̂0)/t; each equals its closed form for x0 ~ N(μ, diag(var)): E[ε | x], ∇ log p_σ(x) (autograd of
    the exact log-density), and the exact velocity field itself."""
    mu, var = gaussian_case()
    velocity = gaussian_velocity(mu, var)
    flow = FlowDenoiser(velocity)
    exact = GaussianDenoiser(mu, torch.diag(var))
    x = exact.sample(5, torch.Generator().manual_seed(3), sigma=sigma).reshape(5, 1, 2, 3).requires_grad_(True)
    s = torch.tensor(sigma, dtype=F64)
    x0 = flow(x, s)
    eps = (x - x0) / sigma
    score = (x0 - x) / sigma ** 2
    (grad,) = torch.autograd.grad(exact.log_prob(x.reshape(5, -1), sigma).sum(), x)
    torch.testing.assert_close(score, grad, rtol=1e-10, atol=1e-10)
    eps_exact = (x.reshape(5, -1) - mu) * sigma / (var + sigma ** 2)      # E[ε | x] = σ (x − μ)/(var + σ²)
    torch.testing.assert_close(eps.reshape(5, -1), eps_exact, rtol=1e-10, atol=1e-10)
    t = sigma_to_t(s)
    x_t = x / (1 + sigma)
    torch.testing.assert_close((x_t - x0) / t, velocity(x_t, t.expand(5)), rtol=1e-10, atol=1e-10)


def test_time_maps_are_inverse():
    s = torch.tensor([0.002, 1.0, 80.0], dtype=F64)
    torch.testing.assert_close(t_to_sigma(sigma_to_t(s)), s)
    assert float(sigma_to_t(torch.tensor(80.0))) == pytest.approx(80 / 81)


def test_flow_ode_with_the_exact_velocity_transports_noise_to_the_gaussian():
    """dx_t/dt = v*(x_t, t) from t = 1 (x_1 = ε) to t = 0 maps ε to μ + sqrt(var) ε (the linear OT map).

    Per dimension the flow scales x_t − (1 − t) μ by sqrt(V(t)/V(1)), V(0) = var, V(1) = 1. Heun, 400 steps.
    """
    mu, var = gaussian_case()
    v = gaussian_velocity(mu, var)
    eps = torch.randn(7, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    ts = torch.linspace(1, 0, 401, dtype=F64)
    x = eps.clone()
    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        h = t1 - t0
        k1 = v(x, t0.expand(7))
        k2 = v(x + h * k1, t1.expand(7))
        x = x + h * (k1 + k2) / 2
    torch.testing.assert_close(x, mu + var.sqrt() * eps, rtol=1e-5, atol=1e-5)


def test_heun_through_the_denoiser_interface_samples_the_gaussian():
    """The package's EDM sampler on the FlowDenoiser reproduces N(μ, var) (mean and variance)."""
    from diffcomm.diffusion.samplers import sample_heun
    from diffcomm.diffusion.schedules import karras_sigmas

    mu, var = gaussian_case()
    flow = FlowDenoiser(gaussian_velocity(mu, var))
    sigmas = karras_sigmas(40, flow.sigma_min, flow.sigma_max).to(F64)
    x = torch.randn(4000, 6, generator=torch.Generator().manual_seed(3), dtype=F64) * sigmas[0]
    x0 = sample_heun(flow, x, sigmas)
    torch.testing.assert_close(x0.mean(0), mu, rtol=0, atol=0.06)
    torch.testing.assert_close(x0.var(0), var, rtol=0.1, atol=0.01)


def tiny_flow(num_classes: int = 0, seed: int = 0) -> FlowDenoiser:
    torch.manual_seed(seed)
    return FlowDenoiser(UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(),
                                        num_classes=num_classes, emb_dim=32)))


def test_loss_decreases_on_a_tiny_config():
    model = tiny_flow(num_classes=3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1
    x0[:, :, :4] = -1  # some structure to learn
    labels = torch.arange(16) % 4  # 3 = null class
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss = flow_loss(model, x0, labels, generator=torch.Generator().manual_seed(step)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_t_sampling():
    g = torch.Generator().manual_seed(0)
    for kind in ("uniform", "logit-normal"):
        t = sample_t(1000, kind, g)
        assert float(t.min()) >= 0 and float(t.max()) < 1 and abs(float(t.mean()) - 0.5) < 0.05
    with pytest.raises(DiffcommError, match="t_sampling"):
        sample_t(3, "cosine")


def test_flow_denoiser_interface():
    model = tiny_flow(num_classes=10)
    assert model.num_classes == 10
    x = torch.randn(2, 1, 8, 8)
    assert model(x, 1.0).shape == x.shape
    assert model(x, torch.tensor([0.5, 2.0]), torch.tensor([3, 10])).shape == x.shape
    # the null class is the unconditional use
    torch.testing.assert_close(model(x, 1.0), model(x, 1.0, torch.tensor([10, 10])))
    assert torch.equal(model.to_pixels(model.to_model(torch.tensor([0.0, 1.0]))), torch.tensor([0.0, 1.0]))
    with pytest.raises(DiffcommError, match="sigma_min"):
        FlowDenoiser(model.net, sigma_min=1.0, sigma_max=0.5)


@pytest.mark.parametrize("receiver", ["dps", "pigdm"])
def test_receivers_run_on_a_flow_prior(receiver):
    from diffcomm.pipeline import build_link, decode

    prior = tiny_flow().eval().requires_grad_(False)
    link = build_link("gaussian", (1, 8, 8), "1/4", "awgn", 10.0)
    rx = link.transmit(torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                       generator=torch.Generator().manual_seed(1))
    res = decode(receiver, link, rx, prior=prior, generator=torch.Generator().manual_seed(2), steps=3)
    assert res.x_hat.shape == (1, 1, 8, 8) and torch.isfinite(res.x_hat).all()
    assert 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1


def test_train_flow_and_rebuild_through_the_zoo(tmp_path):
    """``run_flow_training`` on a few 8×8 digits; ``zoo.load_weights`` rebuilds a FlowDenoiser."""
    from diffcomm import zoo
    from diffcomm.diffusion import train_prior

    config = {"name": "tiny-flow",
              "model": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [], "num_classes": 10,
                        "emb_dim": 32},
              "data": {"dataset": "digits8", "limit": 32},
              "train": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "snapshot_every": 1000, "threads": 1}}
    final = train_prior.run_flow_training(config, tmp_path / "run", progress=False)
    assert final["steps"] == 4
    weights = tmp_path / "run" / "model.safetensors"
    cfg = json.loads(weights.with_suffix(".json").read_text())
    assert cfg["kind"] == "flow" and cfg["preconditioning"]["type"] == "rectified-flow"
    model = zoo.load_weights(weights)
    assert isinstance(model, FlowDenoiser) and model.num_classes == 10
    assert model(torch.randn(2, 1, 8, 8), 1.0).shape == (2, 1, 8, 8)


def test_flow_recipe_validates():
    from pathlib import Path

    import diffcomm
    from diffcomm.training import load_config_file, validate_training_config

    recipe = Path(diffcomm.__file__).parent / "zoo" / "recipes" / "fmnist-flow.toml"
    config = load_config_file(recipe)
    validate_training_config("flow", config)
    assert config["train"]["steps"] == 8400 and config["snapshot"]["quality_samples"] == 500


def test_a_flow_run_ships_and_is_listed_like_the_diffusion_prior(tmp_path):
    """``zoo ship`` evaluates a (tiny, 2-step) Fashion-MNIST flow run like the diffusion prior and records it."""
    from diffcomm.diffusion import train_prior
    from diffcomm.zoo.evaluate import ship

    config = {"name": "tiny-flow28",
              "model": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [], "num_classes": 10,
                        "emb_dim": 32},
              "data": {"dataset": "fashion-mnist", "limit": 64},
              "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 2, "snapshot_every": 1000, "threads": 1}}
    train_prior.run_flow_training(config, tmp_path / "run", progress=False)
    record = ship(tmp_path / "run", "tiny-flow28", "recipe.toml", weights_dir=tmp_path / "zoo",
                  docs_dir=tmp_path / "docs", n=200, steps=2)
    assert record["kind"] == "flow" and "fd_cls_uncond_vs_test" in record["metrics"]
    assert (tmp_path / "zoo" / "tiny-flow28.safetensors").is_file()
