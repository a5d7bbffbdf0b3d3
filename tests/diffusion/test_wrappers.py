"""ε-, v- and x0-prediction wrappers: wrapping the exact VP predictors of Gaussian data must give
exactly the closed-form denoiser E[x0 | x0 + σ ε].

The exact VP predictors are written directly in VP variables, independently of the wrapper:
x_t = a x0 + s ε with a = sqrt(ᾱ_t), s = sqrt(1 - ᾱ_t), x0 ~ N(m, Σ), so
Cov(x_t) = a² Σ + s² I,  E[ε | x_t] = s (a² Σ + s² I)^{-1} (x_t - a m),
E[x0 | x_t] = m + a Σ (a² Σ + s² I)^{-1} (x_t - a m),  v = a ε - s x0 (Salimans & Ho 2022).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcomm.diffusion.gaussian import GaussianDenoiser
from diffcomm.diffusion.schedules import cosine_alpha_bars, linear_alpha_bars, vp_sigma_of_t, vp_t_of_sigma
from diffcomm.diffusion.wrappers import EpsDenoiser, VDenoiser, X0Denoiser
from diffcomm.errors import DiffcommError

F64 = torch.float64
MEAN = torch.tensor([0.3, -0.5, 1.0], dtype=F64)
_A = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
COV = _A @ _A.T / 3 + 0.05 * torch.eye(3, dtype=F64)
D_TRUE = GaussianDenoiser(MEAN, COV)


def table_alpha_bar(t: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
    """ᾱ at a fractional timestep: log σ_t interpolated linearly in t (numpy, independent code)."""
    log_sig = 0.5 * np.log((1 - alpha_bars.numpy()) / alpha_bars.numpy())
    ls = np.interp(t.double().numpy(), np.arange(len(alpha_bars)), log_sig)
    return torch.from_numpy(1 / (1 + np.exp(2 * ls)))


def exact_vp(x_t: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[ε | x_t], E[x0 | x_t]) with per-sample ᾱ (B,)."""
    eps, x0 = [], []
    for xi, abi in zip(x_t.double(), ab.double()):
        a, s = abi.sqrt(), (1 - abi).sqrt()
        c = a * a * COV + s * s * torch.eye(3, dtype=F64)
        r = torch.linalg.solve(c, xi - a * MEAN)
        eps.append(s * r)
        x0.append(MEAN + a * COV @ r)
    return torch.stack(eps), torch.stack(x0)


def make_models(alpha_of_t):
    def eps_model(x_t, t, **kw):
        return exact_vp(x_t, alpha_of_t(t))[0].to(x_t.dtype)

    def x0_model(x_t, t, **kw):
        return exact_vp(x_t, alpha_of_t(t))[1].to(x_t.dtype)

    def v_model(x_t, t, **kw):
        ab = alpha_of_t(t)[:, None]
        eps, x0 = exact_vp(x_t, ab[:, 0])
        return (ab.sqrt() * eps - (1 - ab).sqrt() * x0).to(x_t.dtype)

    return {"eps": eps_model, "v": v_model, "x0": x0_model}


WRAPPERS = {"eps": EpsDenoiser, "v": VDenoiser, "x0": X0Denoiser}
X = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=F64) * 2


@pytest.mark.parametrize("table", ["linear", "cosine"])
@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_discrete_wrappers_equal_closed_form_denoiser(kind, table):
    ab = linear_alpha_bars() if table == "linear" else cosine_alpha_bars()
    model = make_models(lambda t: table_alpha_bar(t, ab))[kind]
    D = WRAPPERS[kind](model, ab)
    sig_table = ((1 - ab) / ab).sqrt()
    on_table = sig_table[torch.tensor([0, 5, 100, 400, 800, 950])]
    between = torch.tensor([0.02, 0.1, 0.77, 2.0, 9.0, 40.0], dtype=F64)      # fractional timesteps
    for sig in (on_table, between, torch.tensor(0.5, dtype=F64)):
        assert torch.allclose(D(X, sig), D_TRUE(X, sig), atol=1e-9), (kind, sig)


@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_continuous_time_wrappers(kind):
    """A continuous-time VP model (t in [0, 1], Song et al. 2021) via time_fn = vp_t_of_sigma."""
    model = make_models(lambda t: 1 / (1 + vp_sigma_of_t(t.double()) ** 2))[kind]
    D = WRAPPERS[kind](model, time_fn=vp_t_of_sigma)
    sig = torch.tensor([0.01, 0.3, 1.0, 3.0, 10.0, 100.0], dtype=F64)
    assert torch.allclose(D(X, sig), D_TRUE(X, sig), atol=1e-9)


@pytest.mark.parametrize("kind", ["v", "x0"])
def test_sigma_conditioned_wrappers(kind):
    """Without a table or time_fn the network is conditioned on σ itself."""
    model = make_models(lambda sigma: 1 / (1 + sigma.double() ** 2))[kind]
    D = WRAPPERS[kind](model)
    sig = torch.tensor([0.05, 0.5, 5.0, 0.5, 0.05, 50.0], dtype=F64)
    assert torch.allclose(D(X, sig), D_TRUE(X, sig), atol=1e-9)


class Spy:
    def __init__(self):
        self.t, self.x_t, self.kw = None, None, None

    def __call__(self, x_t, t, **kw):
        self.t, self.x_t, self.kw = t, x_t, kw
        return torch.zeros_like(x_t)


def test_time_inputs_scaling_quantize_and_kwargs():
    ab = linear_alpha_bars()
    sig_table = ((1 - ab) / ab).sqrt()
    spy = Spy()
    D = EpsDenoiser(spy, ab)
    sig = torch.stack([sig_table[10], sig_table[500], (sig_table[20] * sig_table[21]).sqrt()])
    x = torch.ones(3, 2)
    out = D(x, sig, class_labels=torch.tensor([1, 2, 3]))
    assert torch.equal(out, x)                                                   # ε̂ = 0
    assert torch.allclose(spy.t.double(), torch.tensor([10.0, 500.0, 20.5], dtype=F64), atol=1e-4)
    assert torch.allclose(spy.x_t, x / (1 + sig[:, None].float() ** 2).sqrt())   # x_t = sqrt(ᾱ) x
    assert spy.kw["class_labels"].tolist() == [1, 2, 3]
    EpsDenoiser(spy, ab, quantize=True)(x, sig)
    assert spy.t.tolist() == [10.0, 500.0, 20.0]
    assert D.t_to_sigma(torch.tensor(500.0)).item() == pytest.approx(sig_table[500].item(), rel=1e-12)
    X0Denoiser(spy, vp_input=False)(x, sig)
    assert torch.equal(spy.x_t, x)


class EchoNet(torch.nn.Module):
    """ε̂(x_t, t) = w · x_t with one parameter."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x_t, t):
        return self.w * x_t


def test_wrappers_are_modules_and_scalar_sigma():
    D = EpsDenoiser(EchoNet(), linear_alpha_bars())
    assert isinstance(D, torch.nn.Module) and "sigma_table" in dict(D.named_buffers())
    assert len(list(D.parameters())) == 1
    assert torch.allclose(D(torch.ones(2, 1), 2.0), torch.ones(2, 1) - 2.0 / 5 ** 0.5)   # ε̂ = x_t = x/√5


def test_wrapper_errors():
    ab = linear_alpha_bars()
    with pytest.raises(DiffcommError):
        EpsDenoiser(Spy())
    with pytest.raises(DiffcommError):
        VDenoiser(Spy(), ab, time_fn=vp_t_of_sigma)
    with pytest.raises(DiffcommError):
        EpsDenoiser(Spy(), ab.flip(0))
    with pytest.raises(DiffcommError):
        EpsDenoiser(Spy(), ab)(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(DiffcommError):
        VDenoiser(Spy()).t_to_sigma(torch.tensor(1.0))
