"""DataTerm (shared by flow_lt, pnp_flow, daps): gradient, Lipschitz constant, data step against closed forms."""

import torch

from diffcomm.receivers.fidelity import DataTerm, posterior_var

from .gaussian_case import small_setup

torch.set_num_threads(1)
F64 = torch.float64


def test_linear_gradient_equals_autograd_of_the_complex_residual():
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh")
    term = DataTerm(link, rx, prior)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    xr = x.float().requires_grad_(True)
    from diffcomm.receivers.base import complex_sq_norm

    loss = 0.5 * complex_sq_norm(rx.y - link.operator(rx)(prior.to_pixels(xr))).sum()
    (want,) = torch.autograd.grad(loss, xr)
    torch.testing.assert_close(term.grad(x).float(), want, rtol=1e-4, atol=1e-5)


def test_power_iteration_finds_the_largest_squared_singular_value():
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh")
    term = DataTerm(link, rx, prior)
    torch.testing.assert_close(term._power_iteration(), term.lipschitz, rtol=2e-3, atol=0)


def test_jscc_gradient_matches_a_finite_difference():
    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.pipeline import build_link

    x = get_dataset("fashion-mnist", "train").images[-2:]
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    term = DataTerm(link, rx, zoo.load("fmnist-prior"))
    x0, _ = term.estimate()
    g = term.grad(x0)
    norm = g.flatten(1).norm(dim=1)
    v = g / norm.reshape(-1, 1, 1, 1)                  # along the gradient: the derivative is ‖g‖ (float32-safe)
    h = 1e-2
    fd = (0.5 * term.residual(x0 + h * v) - 0.5 * term.residual(x0 - h * v)) / (2 * h)
    torch.testing.assert_close(fd.double(), norm.double(), rtol=2e-2, atol=0)
    assert (term.lipschitz > 0).all()


def test_nonlinear_data_step_is_one_bounded_gradient_step():
    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.pipeline import build_link

    x = get_dataset("fashion-mnist", "train").images[-2:]
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 60.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    term = DataTerm(link, rx, zoo.load("fmnist-prior"))
    x0, _ = term.estimate()
    r2 = posterior_var(torch.full((2,), 1.0, dtype=F64))
    step = r2 / (term.noise_var + r2 * term.lipschitz)
    assert (step <= 1 / term.lipschitz).all()
    torch.testing.assert_close(term.data_step(x0, r2), x0 - step.float().reshape(-1, 1, 1, 1) * term.grad(x0))
