"""Shared test fixtures: a Gaussian image prior with an exact posterior on a small linear link.

Pixel-space prior x ~ N(m, Σ) on 1×4×4 images (n = 16). The receivers work in model space
x_m = 2x − 1, where the same prior is N(2m − 1, 4Σ); :class:`GaussianPrior` wraps the closed-form
:class:`~diffcomm.diffusion.gaussian.GaussianDenoiser` for that model-space Gaussian and exposes the
prior interface (``prior(x, sigma, class_labels)``, ``to_model``, ``to_pixels``, ``sigma_min``,
``sigma_max``). The exact pixel-space posterior comes from
:func:`diffcomm.receivers.linear.gaussian_posterior` with the receiver-side matrix
``link.matrix(rx)`` and noise variance N0/2 per real dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffcomm.channels import complex_to_real
from diffcomm.diffusion.gaussian import GaussianDenoiser
from diffcomm.link import Link, Received, make_link
from diffcomm.receivers.linear import gaussian_posterior

SHAPE = (1, 4, 4)
N = 16


class GaussianPrior:
    """Model-space prior N(2m − 1, 4Σ) for the pixel-space Gaussian N(m, Σ); counts calls."""

    sigma_min = 0.002
    sigma_max = 80.0

    def __init__(self, mean_pix: torch.Tensor, cov_pix: torch.Tensor):
        self.mean_pix = mean_pix.double()
        self.cov_pix = cov_pix.double()
        self.denoiser = GaussianDenoiser(2 * self.mean_pix - 1, 4 * self.cov_pix)
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma, class_labels=None) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma)

    @staticmethod
    def to_model(x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1

    @staticmethod
    def to_pixels(x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2


def prior_moments(isotropic: bool = False, std: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel mean (16,) and covariance (16, 16), float64.

    Anisotropic: a squared-exponential kernel on the 4×4 grid (length 1.5 px, pixel std ``std``)
    plus a 10 % white nugget; mean 0.5 plus a gentle ramp. Isotropic: ``std² I`` with the same mean.
    Samples stay well inside [0, 1] (the ramp is ±0.1 and 5 std is 0.4), so the receivers' clamp
    to [0, 1] does not bias the sample moments.
    """
    ii, jj = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    mean = (0.5 + 0.1 * (ii - 1.5) / 1.5 * (jj - 1.5) / 1.5).reshape(-1).double()
    if isotropic:
        return mean, std ** 2 * torch.eye(N, dtype=torch.float64)
    pos = torch.stack([ii.reshape(-1), jj.reshape(-1)], 1).double()
    d2 = torch.cdist(pos, pos) ** 2
    cov = std ** 2 * (0.9 * torch.exp(-d2 / (2 * 1.5 ** 2)) + 0.1 * torch.eye(N, dtype=torch.float64))
    return mean, cov


@dataclass
class Case:
    link: Link
    rx: Received              # the same received frame replicated `batch` times
    prior: GaussianPrior
    x_true: torch.Tensor      # (1, 1, 4, 4) pixels
    post_mean: torch.Tensor   # (16,) float64 pixels
    post_cov: torch.Tensor    # (16, 16) float64 pixels


def replicate(rx: Received, batch: int) -> Received:
    """The received frame of image 0 repeated ``batch`` times (for sampling its posterior)."""
    return Received(y=rx.y[:1].expand(batch, -1).clone(),
                    h_hat=rx.h_hat[:1].expand(batch, -1).clone(), n0=rx.n0,
                    gain=rx.gain[:1].expand(batch).clone(), pilots_used=rx.pilots_used)


def make_case(encoder: str = "gaussian", cbr: str = "1/4", channel: str = "awgn", snr_db: float = 10.0,
              batch: int = 2000, seed: int = 0, isotropic: bool = False) -> Case:
    """Draw one image from the prior, send it once, replicate the frame ``batch`` times."""
    mean, cov = prior_moments(isotropic)
    prior = GaussianPrior(mean, cov)
    gen = torch.Generator().manual_seed(seed)
    x_true = prior.denoiser.sample(1, gen)  # model space, (1, 16)
    x_true = prior.to_pixels(x_true).clamp(0, 1).float().reshape(1, *SHAPE)
    link = make_link(encoder, SHAPE, cbr, channel=channel, snr_db=snr_db, seed=seed)
    rx1 = link.transmit(x_true, generator=gen)
    post_mean, post_cov = gaussian_posterior(link.matrix(rx1).double(), complex_to_real(rx1.y).double(),
                                             rx1.n0 / 2, mean, cov)
    return Case(link, replicate(rx1, batch), prior, x_true, post_mean[0], post_cov[0])


def sample_moments(x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = x_hat.flatten(1).double()
    return v.mean(0), torch.cov(v.T)


def whitened_mean_error(x_hat: torch.Tensor, case: Case) -> float:
    """N (x̄ − μ)ᵀ C⁻¹ (x̄ − μ): χ²_16 under exact posterior sampling (C = exact posterior covariance)."""
    mean, _ = sample_moments(x_hat)
    d = mean - case.post_mean
    return float(x_hat.shape[0] * d @ torch.linalg.solve(case.post_cov, d))


def variance_ratios(x_hat: torch.Tensor, case: Case) -> torch.Tensor:
    """Sample variance / exact posterior variance along each eigenvector of the exact posterior covariance.

    Under exact sampling each ratio is χ²_{N−1}/(N−1): mean 1, std sqrt(2/(N−1)).
    """
    _, s = sample_moments(x_hat)
    lam, u = torch.linalg.eigh(case.post_cov)
    return torch.einsum("ij,ik,kj->j", u, s, u) / lam


def ratio_sd(batch: int) -> float:
    return math.sqrt(2 / (batch - 1))


# ------------------------------------------------------------------------------------------------
# Closed-form output moments: with a Gaussian prior, a linear link and Gaussian noise, every step of
# these samplers is x' = L x + c + w, w ~ N(0, Q), so the output law is Gaussian with moments that
# follow exactly from the initial law N(0, σ_0² I) (model space). The step maps below restate each
# paper's update in matrix form; no sampling is involved.
# ------------------------------------------------------------------------------------------------

F64 = torch.float64


def model_space(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """(prior mean, prior cov, A_m (m, n), y_m (m,), σ_y²) of image 0 in model space, float64."""
    a = case.link.matrix(case.rx)[0].to(F64) / 2
    y = complex_to_real(case.rx.y[0]).to(F64) - a.sum(1)
    return 2 * case.prior.mean_pix - 1, 4 * case.prior.cov_pix, a, y, case.rx.n0 / 2


def to_pixel_moments(mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (mean + 1) / 2, cov / 4


def propagate(sigmas: torch.Tensor, step) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments after the chain: ``step(i, s, s_next) -> (L, c, Q)``; start N(0, σ_0² I) in model space."""
    mean = torch.zeros(N, dtype=F64)
    cov = float(sigmas[0]) ** 2 * torch.eye(N, dtype=F64)
    for i in range(len(sigmas) - 1):
        lin, c, q = step(i, float(sigmas[i]), float(sigmas[i + 1]))
        mean = lin @ mean + c
        cov = lin @ cov @ lin.T + q
    return mean, (cov + cov.T) / 2


def ddim_factors(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of a DDIM(η) step in σ form."""
    if s_next == 0:
        return 0.0, 0.0
    up = min(s_next, eta * s_next * math.sqrt(s * s - s_next * s_next) / s)
    return math.sqrt(s_next * s_next - up * up), up


def tweedie(mu: torch.Tensor, cov: torch.Tensor, s: float) -> torch.Tensor:
    """K = Σ (Σ + σ² I)⁻¹: the Gaussian denoiser is D(x) = μ + K (x − μ), and ∂D/∂x = K."""
    return cov @ torch.linalg.inv(cov + s * s * torch.eye(N, dtype=F64))


def ddim_moments(mu: torch.Tensor, cov: torch.Tensor, sigmas: torch.Tensor, eta: float):
    """DDIM(η) with the exact denoiser of N(mu, cov) (model space); x' = D + σ_down (x − D)/σ + σ_up z."""
    eye = torch.eye(N, dtype=F64)

    def step(i, s, s_next):
        k = tweedie(mu, cov, s)
        down, up = ddim_factors(s, s_next, eta)
        r = down / s
        return (1 - r) * k + r * eye, (1 - r) * (eye - k) @ mu, up * up * eye
    return propagate(sigmas, step)


def pigdm_moments(case: Case, sigmas: torch.Tensor, eta: float, sigma_data: float):
    """ΠGDM eq. (7)-(8): D_y = x̂0 + σ² Kᵀ Aᵀ (r² AAᵀ + σ_y² I)⁻¹ (y − A x̂0), then DDIM(η)."""
    mu, cov, a, y, var = model_space(case)
    eye = torch.eye(N, dtype=F64)

    def step(i, s, s_next):
        k = tweedie(mu, cov, s)
        r2 = s * s * sigma_data ** 2 / (s * s + sigma_data ** 2)
        w = s * s * k.T @ a.T @ torch.linalg.inv(r2 * a @ a.T + var * torch.eye(len(y), dtype=F64))
        lin_d = (eye - w @ a) @ k                               # D_y = lin_d x + c_d
        c_d = (eye - w @ a) @ (eye - k) @ mu + w @ y
        down, up = ddim_factors(s, s_next, eta)
        r = down / s
        return (1 - r) * lin_d + r * eye, (1 - r) * c_d, up * up * eye
    return propagate(sigmas, step)


def ddnm_moments(case: Case, sigmas: torch.Tensor):
    """DDNM with the measurement noise counted once (the ``ddpm`` sampler, default), in σ form: the prior's DDPM
    step x' = D + (σ'²/σ²)(x − D) + c z, c² = σ'²(σ² − σ'²)/σ², then along every v_i with ν_i = σ_y/s_i ≤ σ'
    the state's component replaced by (A⁺y)_i + sqrt(σ'² − ν_i²) z_i (``receivers.ddnm.range_replacement``)."""
    mu, cov, a, y, var = model_space(case)
    u, sv, vh = torch.linalg.svd(a, full_matrices=False)
    cy = (u.T @ y) / sv
    nu = math.sqrt(var) / sv
    eye = torch.eye(N, dtype=F64)

    def step(i, s, s_next):
        k = tweedie(mu, cov, s)
        r = (s_next / s) ** 2
        lin = (1 - r) * k + r * eye
        c = (1 - r) * (eye - k) @ mu
        q = s_next ** 2 * (s * s - s_next ** 2) / (s * s) * eye
        on = nu <= s_next
        v_on = vh[on]                                            # the replaced directions
        rest = eye - v_on.T @ v_on
        g2 = s_next ** 2 - nu[on] ** 2
        return rest @ lin, rest @ c + v_on.T @ cy[on], rest @ q @ rest + v_on.T @ torch.diag(g2) @ v_on
    return propagate(sigmas, step)


def ddnm_agnostic_moments(case: Case, sigmas: torch.Tensor):
    """DDNM+'s sampler-agnostic conditional denoiser (any sampler but ``ddpm``) run by DDIM(η = 1), in σ form.

    D_y = x̂0 − Vᵀ diag(λ_i) V A⁺(A x̂0 − y) = (I − VᵀΛV) x̂0 + VᵀΛ c_y with c_y = S⁻¹Uᵀy (A⁺y in the basis
    v_i) and λ_i = min(1, σ s_i / σ_y); then DDIM(η = 1), i.e. the DDPM posterior step without eq. 17's
    noise reshaping: x' = D_y + (σ'²/σ²)(x − D_y) + c z, c² = σ'²(σ² − σ'²)/σ² (no noise on the step to 0).
    """
    mu, cov, a, y, var = model_space(case)
    u, sv, vh = torch.linalg.svd(a, full_matrices=False)
    cy = (u.T @ y) / sv
    eye = torch.eye(N, dtype=F64)
    sig_y = math.sqrt(var)

    def step(i, s, s_next):
        k = tweedie(mu, cov, s)
        lam = (s * sv / sig_y).clamp(max=1.0)
        proj = eye - vh.T @ torch.diag(lam) @ vh                 # D_y = proj x̂0 + Vᵀ Λ c_y
        r = (s_next / s) ** 2
        lin = (1 - r) * proj @ k + r * eye
        c = (1 - r) * (proj @ (eye - k) @ mu + vh.T @ (lam * cy))
        up2 = s_next ** 2 * (s * s - s_next ** 2) / (s * s)
        return lin, c, up2 * eye
    return propagate(sigmas, step)


def diffpir_moments(case: Case, sigmas: torch.Tensor, lam: float, zeta: float):
    """DiffPIR Alg. 1: x̂0 = x0 + Aᵀ(AAᵀ + ρI)⁻¹(y − A x0), ρ = λσ_y²/σ², x' = x̂0 + σ'(√(1−ζ) ε̂ + √ζ z)."""
    mu, cov, a, y, var = model_space(case)
    eye = torch.eye(N, dtype=F64)

    def step(i, s, s_next):
        k = tweedie(mu, cov, s)
        g = a.T @ torch.linalg.inv(a @ a.T + lam * var / s ** 2 * torch.eye(len(y), dtype=F64))
        t = eye - g @ a                                          # x̂0 = t x0 + g y
        r = s_next * math.sqrt(1 - zeta) / s
        lin = (1 - r) * t @ k + r * eye
        c = (1 - r) * (t @ (eye - k) @ mu + g @ y)
        return lin, c, zeta * s_next ** 2 * eye
    return propagate(sigmas, step)


def moment_statistics(x_hat: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(Hotelling-type χ² of the sample mean, variance ratios along cov's eigenvectors) for pixel samples.

    Under x_hat ~ N(mean, cov): the first is χ²_16, each ratio is χ²_{N−1}/(N−1).
    """
    v = x_hat.flatten(1).to(F64)
    d = v.mean(0) - mean
    chi2 = float(v.shape[0] * d @ torch.linalg.solve(cov, d))
    lam, u = torch.linalg.eigh(cov)
    s = torch.cov(v.T)
    return chi2, torch.einsum("ij,ik,kj->j", u, s, u) / lam


def receiver_matrix_f64(link, rx):
    """The receiver-side real matrix M = [[Re c, −Im c], [Im c, Re c]] E per symbol, c = ĥ g, built in float64.

    Independent of the link operator (which factorises M through the encoder's SVD when |c| is the same for
    every symbol): float64 products of the exact float32 inputs, so a reference to ~1e-15, not to float32's 1e-7.
    """
    c = (rx.h_hat * rx.gain[:, None]).to(torch.complex128)                   # (B, k)
    e = link.encoder.matrix.double().reshape(link.k, 2, link.n)
    er, ei = e[:, 0], e[:, 1]
    cr, ci = c.real[..., None], c.imag[..., None]
    return torch.stack([cr * er - ci * ei, ci * er + cr * ei], dim=2).reshape(rx.batch, 2 * link.k, link.n)


# ------------------------------------------------------------------------------------------------
# Bad inputs shared by the receiver tests
# ------------------------------------------------------------------------------------------------

class SquareEncoder:
    """A nonlinear encoder (x -> x², as complex symbols) to check that linear-only receivers refuse it."""

    name = "square"
    shape = SHAPE
    k = 4

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, : 2 * self.k] ** 2
        return torch.complex(v[:, 0::2], v[:, 1::2])


def bad_inputs(batch: int = 2) -> list[tuple[str, Link, Received]]:
    """(label, link, rx) triples a linear-link receiver must refuse with a one-line DiffcommError."""
    import dataclasses

    mean, cov = prior_moments()
    x = ((torch.arange(batch * N, dtype=torch.float32).reshape(batch, *SHAPE) % 7) / 7).clamp(0, 1)
    link = make_link("gaussian", SHAPE, "1/4", snr_db=10.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    nan_y = rx.y.clone()
    nan_y[0, 0] = complex(float("nan"), 0.0)
    nonlinear = Link(SquareEncoder(), "awgn", 10.0)
    return [
        ("nan", link, dataclasses.replace(rx, y=nan_y)),
        ("real dtype", link, dataclasses.replace(rx, y=rx.y.real.clone())),
        ("wrong k", link, dataclasses.replace(rx, y=rx.y[:, :3].clone())),
        ("1-d y", link, dataclasses.replace(rx, y=rx.y[0].clone())),
        ("nonlinear link", nonlinear, nonlinear.transmit(x, generator=torch.Generator().manual_seed(0))),
        ("no csi", link, dataclasses.replace(rx, h_hat=None)),
    ]


def small_setup(batch: int = 4, snr_db: float = 10.0, channel: str = "awgn", encoder: str = "gaussian",
                cbr: str = "1/4", seed: int = 0) -> tuple[Link, Received, GaussianPrior, torch.Tensor]:
    """A few prior images sent over a small linear link: (link, rx, prior, x_true pixels)."""
    mean, cov = prior_moments()
    prior = GaussianPrior(mean, cov)
    gen = torch.Generator().manual_seed(seed)
    x = prior.to_pixels(prior.denoiser.sample(batch, gen)).clamp(0, 1).float().reshape(batch, *SHAPE)
    link = make_link(encoder, SHAPE, cbr, channel=channel, snr_db=snr_db, seed=seed)
    return link, link.transmit(x, generator=gen), prior, x
