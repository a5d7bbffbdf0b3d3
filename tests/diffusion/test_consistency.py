"""Consistency models: the boundary condition, the exact Gaussian consistency function, distillation
(loss, teacher step, training, zoo rebuild, recipe errors) and consistency sampling; resume after kill -9 is
tests/diffusion/test_recipes_resume.py."""

import json

import pytest
import torch

from diffcomm.diffusion.consistency import (
    ConsistencyDenoiser,
    consistency_distillation_loss,
    consistency_sigmas,
    distillation_grid,
    pseudo_huber,
    teacher_heun_step,
)
from diffcomm.diffusion.gaussian import GaussianDenoiser
from diffcomm.diffusion.samplers import NFECounter, sample_consistency
from diffcomm.diffusion.unet import UNet
from diffcomm.errors import DiffcommError

torch.set_num_threads(1)
F64 = torch.float64
SIGMA_MIN = 0.002


def tiny_cm(seed: int = 0) -> ConsistencyDenoiser:
    torch.manual_seed(seed)
    model = ConsistencyDenoiser(UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(),
                                     num_classes=10, emb_dim=32))
    for p in model.parameters():  # a non-trivial network (the U-Net zero-initialises its output layers)
        p.data.normal_(0, 0.2, generator=torch.Generator().manual_seed(seed))
    return model


def gaussian_case(d: int = 6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(d, generator=g, dtype=F64) * 0.5, torch.rand(d, generator=g, dtype=F64) * 0.5 + 0.05


def exact_consistency(mu: torch.Tensor, var: torch.Tensor):
    """f*(x, σ) for x0 ~ N(μ, diag(var)): the PF-ODE keeps (x − μ)/sqrt(var + σ²) constant, so
    f*(x, σ) = μ + (x − μ) sqrt(var + σ_min²) / sqrt(var + σ²) (f*(x, σ_min) = x)."""
    def f(x, sigma, class_labels=None):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
        flat = x.reshape(x.shape[0], -1)
        return (mu + (flat - mu) * ((var + SIGMA_MIN ** 2) / (var + s ** 2)).sqrt()).reshape(x.shape)
    return f


def test_boundary_condition_is_exact():
    """c_skip(σ_min) = 1 and c_out(σ_min) = 0, so f(x, σ_min) = x bitwise, whatever the network."""
    model = tiny_cm()
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x, torch.tensor(SIGMA_MIN)), x)
    assert torch.equal(model(x, torch.full((3,), SIGMA_MIN), torch.tensor([1, 2, 10])), x)
    assert not torch.allclose(model(x, torch.tensor(1.0)), x)  # away from σ_min the network acts
    c_skip, c_out, _ = model.scalings(torch.tensor([SIGMA_MIN, 80.0], dtype=F64))
    assert c_skip.tolist()[0] == 1.0 and c_out.tolist()[0] == 0.0
    assert 0 < c_skip[1] < 1e-4 and c_out[1] == pytest.approx(0.5, rel=1e-3)


def test_bad_sigma_range_is_one_line_error():
    with pytest.raises(DiffcommError, match="sigma_min"):
        ConsistencyDenoiser(tiny_cm().net, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(DiffcommError, match="steps >= 1"):
        consistency_sigmas(0)
    with pytest.raises(DiffcommError, match="num_scales >= 2"):
        distillation_grid(1)


def test_grids():
    s = consistency_sigmas(3)
    assert len(s) == 4 and s[0] == 80.0 and s[-1] == 0 and float(s[-2]) > SIGMA_MIN
    g = distillation_grid(18)
    assert len(g) == 18 and float(g[0]) == pytest.approx(SIGMA_MIN) and float(g[-1]) == pytest.approx(80.0)
    assert (g[1:] > g[:-1]).all()


def test_teacher_heun_step_follows_the_exact_gaussian_trajectory():
    """With the exact Gaussian denoiser, a Heun step between adjacent distillation levels lands on the exact
    PF-ODE trajectory, x_n = μ + (x_{n+1} − μ) sqrt(var + σ_n²)/sqrt(var + σ_{n+1}²), up to Heun's local error."""
    mu, var = gaussian_case()
    teacher = GaussianDenoiser(mu, torch.diag(var))
    grid = distillation_grid(40).to(F64)
    g = torch.Generator().manual_seed(1)
    for n in (0, 10, 20, 38):
        s, s_next = grid[n], grid[n + 1]
        x = mu + torch.randn(64, 6, generator=g, dtype=F64) * (var + s_next ** 2).sqrt()
        step = teacher_heun_step(teacher, x, s_next.expand(64), s.expand(64))
        exact = mu + (x - mu) * ((var + s ** 2) / (var + s_next ** 2)).sqrt()
        scale = float((x - mu).abs().max())
        assert float((step - exact).abs().max()) < 2e-2 * scale, n


def test_distillation_loss_is_small_for_the_exact_consistency_function_and_not_for_a_wrong_one():
    """The exact f* is (up to the teacher's Heun error) a zero of the distillation loss; the Tweedie denoiser is not."""
    mu, var = gaussian_case()
    teacher = GaussianDenoiser(mu, torch.diag(var))
    exact = exact_consistency(mu, var)

    class Student:
        sigma_min, sigma_max = SIGMA_MIN, 80.0

        def __init__(self, f):
            self.f = f

        def __call__(self, x, sigma, class_labels=None):
            return self.f(x, sigma)

    x0 = mu + torch.randn(256, 6, generator=torch.Generator().manual_seed(2), dtype=F64) * var.sqrt()
    good = consistency_distillation_loss(Student(exact), teacher, x0, num_scales=40,
                                         generator=torch.Generator().manual_seed(3))

    # the posterior mean E[x0 | x_σ] (where distillation starts from) is not consistent along a trajectory
    bad = consistency_distillation_loss(Student(teacher), teacher, x0, num_scales=40,
                                        generator=torch.Generator().manual_seed(3))
    assert float(good.mean()) < 0.05 * float(bad.mean())


def test_pseudo_huber():
    a, b = torch.zeros(2, 4), torch.tensor([[0.0, 0, 0, 0], [3.0, 4.0, 0, 0]])
    torch.testing.assert_close(pseudo_huber(a, b, c=0.0), torch.tensor([0.0, 5.0]))
    c = 0.00054 * 2  # 0.00054 √dim, dim = 4
    assert float(pseudo_huber(a, b)[1]) == pytest.approx((25 + c * c) ** 0.5 - c, abs=1e-6)


def test_one_and_two_step_sampling_with_the_exact_consistency_function_draws_the_gaussian():
    """Started from the exact σ_max marginal N(μ, var + σ_max²), f* returns N(μ, var + σ_min²) in one step, and a
    second (re-noise, map) step keeps it (to O(σ_min²)): mean and variance within 5 standard errors, 20,000 draws."""
    mu, var = gaussian_case()
    f = NFECounter(exact_consistency(mu, var))
    g = torch.Generator().manual_seed(4)
    n = 20_000
    target_var = var + SIGMA_MIN ** 2
    for steps in (1, 2):
        sigmas = consistency_sigmas(steps).to(F64)
        start = mu + torch.randn(n, 6, generator=g, dtype=F64) * (var + sigmas[0] ** 2).sqrt()
        x = sample_consistency(f, start, sigmas, generator=g)
        assert ((x.mean(0) - mu).abs() < 5 * (target_var / n).sqrt()).all(), steps
        assert ((x.var(0) - target_var).abs() < 5 * target_var * (2 / n) ** 0.5).all(), steps
    assert f.nfe == 3  # one evaluation per level: 1 + 2


def tiny_recipe(**train):
    return {"name": "cm-tiny", "distill": {"teacher": "fmnist-prior", "num_scales": 6},
            "data": {"limit": 64},
            "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "snapshot_every": 1000, "threads": 1,
                      "log_every": 1, **train}}


def test_distillation_trains_and_rebuilds_through_the_zoo(tmp_path):
    from diffcomm import zoo
    from diffcomm.diffusion.train_consistency import run_consistency_training

    final = run_consistency_training(tiny_recipe(), tmp_path / "run", progress=False)
    assert final["steps"] == 4 and final["final_loss"] > 0
    cfg = json.loads((tmp_path / "run" / "model.json").read_text())
    assert cfg["kind"] == "consistency" and cfg["preconditioning"]["teacher"] == "fmnist-prior"
    assert cfg["sampling"] == {"sampler": "consistency", "steps": 2}
    model = zoo.load_weights(tmp_path / "run" / "model.safetensors")
    assert isinstance(model, ConsistencyDenoiser) and model.num_classes == 10
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x, torch.tensor(SIGMA_MIN)), x)
    assert (tmp_path / "run" / "samples_0000004_1step.png").is_file()


@pytest.mark.parametrize("change, message", [
    ({"distill": {"teacher": "fmnist-classifier"}}, "must be a shipped EDM diffusion prior"),
    ({"distill": {"teacher": "fmnist-prior", "num_scales": 1}}, "num_scales"),
    ({"distill": {"teacher": "fmnist-prior", "bogus": 1}}, "bogus"),
    ({"model": {"base_channels": 8}}, "unknown config section model"),
    ({"snapshot": {"quality_samples": 50}}, "quality_samples"),
    ({"data": {"labels": 3}}, "unknown \\[data\\] keys labels"),
])
def test_bad_recipes_are_one_line_errors(tmp_path, change, message):
    from diffcomm.diffusion.train_consistency import run_consistency_training

    with pytest.raises(DiffcommError, match=message) as exc:
        run_consistency_training({**tiny_recipe(), **change}, tmp_path / "run", progress=False)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "run").exists()


def test_shipped_recipe_validates():
    from pathlib import Path

    import diffcomm
    from diffcomm.diffusion.train_consistency import validate_consistency_config
    from diffcomm.training import load_config_file

    recipe = Path(diffcomm.__file__).parent / "zoo" / "recipes" / "fmnist-consistency.toml"
    config = validate_consistency_config(load_config_file(recipe))
    assert config["distill"]["teacher"] == "fmnist-prior-long"


def test_a_consistency_run_ships_with_its_own_sampler(tmp_path):
    """``zoo ship`` evaluates a consistency run with the sampler its record names (2-step consistency sampling)."""
    from diffcomm.diffusion.train_consistency import run_consistency_training
    from diffcomm.zoo.evaluate import ship

    run_consistency_training(tiny_recipe(steps=2), tmp_path / "run", progress=False)
    record = ship(tmp_path / "run", "tiny-cm", "recipe.toml", weights_dir=tmp_path / "zoo", docs_dir=tmp_path / "docs",
                  n=200)
    m = record["metrics"]
    assert record["kind"] == "consistency" and m["sampler"] == "consistency" and m["steps"] == 2
    assert m["nfe_per_image_unconditional"] == 2 and m["nfe_per_image_conditional"] == 4  # CFG counts twice
    assert 0 < m["fd_cls_uncond_vs_test"] < 1000 and (tmp_path / "zoo" / "tiny-cm.safetensors").is_file()
