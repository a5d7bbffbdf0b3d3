"""DDNM receiver: the range replacement (default) and the noise-aware range correction (other samplers), data
consistency, the output contract, bad inputs."""

import pytest
import torch

from diffcomm.channels import complex_to_real
from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import model_space
from diffcomm.receivers.ddnm import ddnm_denoiser, ddnm_receiver, range_replacement

from .gaussian_case import GaussianPrior, bad_inputs, prior_moments, receiver_matrix_f64, small_setup

torch.set_num_threads(1)


@pytest.mark.parametrize("snr_db", [10.0, 40.0])
def test_denoiser_is_the_noise_aware_range_null_step(snr_db):
    """D_y = x̂0 − Σ_i λ_i v_i v_iᵀ A⁺(A x̂0 − y), λ_i = min(1, σ s_i/σ_y) (the sampler-agnostic term), per row σ.

    Checked against an independent float64 SVD of A = M/2: the null-space part of D_y is the prior's x̂0, along
    v_i the output is (1 − λ_i) v_iᵀx̂0 + λ_i v_iᵀA⁺y, and at σ = 10 (all λ_i = 1) A D_y = y exactly.
    """
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh", snr_db=snr_db)
    system = model_space(link, rx, prior)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 10.0], dtype=torch.float64)
    got = ddnm_denoiser(prior, system)(x, sigma).flatten(1)
    x0 = prior(x, sigma).flatten(1)
    a = receiver_matrix_f64(link, rx) / 2
    _, s, vh = torch.linalg.svd(a, full_matrices=True)
    m = a.shape[1]
    v_range, v_null = vh[:, :m], vh[:, m:]
    coef_y = (v_range @ torch.linalg.pinv(a) @ system.y[..., None]).squeeze(-1)
    lam = (sigma[:, None] * s / (rx.n0 / 2) ** 0.5).clamp(max=1.0)
    want_range = (1 - lam) * (v_range @ x0[..., None]).squeeze(-1) + lam * coef_y
    torch.testing.assert_close((v_range @ got[..., None]).squeeze(-1), want_range, rtol=0, atol=1e-9)
    torch.testing.assert_close((v_null @ got[..., None]).squeeze(-1), (v_null @ x0[..., None]).squeeze(-1),
                               rtol=0, atol=1e-9)
    assert bool((lam[2] == 1).all())
    torch.testing.assert_close((a[2] @ got[2]), system.y[2], rtol=0, atol=1e-9)
    assert bool((lam[0] < 1).any())                          # the budget binds at low σ


def test_native_range_replacement_counts_the_measurement_noise_once():
    """The default sampler's state constraint: after a step to σ', along every v_i with ν_i = σ_y/s_i ≤ σ' the state
    is (A⁺y)_i + sqrt(σ'² − ν_i²) z_i (z_i from the generator); the other range directions and the null space are
    untouched; at σ' = 0 (the last step) nothing changes. Checked against an independent float64 SVD of A = M/2
    (singular vectors up to sign, so the replaced components are compared through |v_iᵀx − (A⁺y)_i|)."""
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh", snr_db=10.0)
    system = model_space(link, rx, prior)
    a = receiver_matrix_f64(link, rx) / 2
    _, s, vh = torch.linalg.svd(a, full_matrices=True)
    m = a.shape[1]
    v_range, v_null = vh[:, :m], vh[:, m:]
    coef_y = (v_range @ torch.linalg.pinv(a) @ system.y[..., None]).squeeze(-1)
    nu = (rx.n0 / 2) ** 0.5 / s                                          # (3, m), descending s: ascending ν
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ordered = nu.flatten().sort().values
    mid = len(ordered) // 2
    level = float(ordered[mid - 1] + ordered[mid]) / 2                   # between two ν_i, half-way
    on = nu <= level
    assert bool(on.any()) and bool((~on).any())                          # both kinds of direction occur
    got = range_replacement(system, torch.Generator().manual_seed(7))(x, torch.tensor(level)).flatten(1)
    z = torch.randn(3, m, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    xf = x.flatten(1)
    proj = lambda v, t: (v @ t[..., None]).squeeze(-1)                   # noqa: E731
    torch.testing.assert_close(proj(v_null, got), proj(v_null, xf), rtol=0, atol=1e-9)
    got_r, x_r = proj(v_range, got), proj(v_range, xf)
    torch.testing.assert_close(got_r[~on], x_r[~on], rtol=0, atol=1e-9)
    want = (level ** 2 - nu ** 2).clamp_min(0).sqrt() * z.abs()
    torch.testing.assert_close((got_r - coef_y).abs()[on], want[on], rtol=1e-5, atol=1e-9)   # float32 y
    last = range_replacement(system, torch.Generator().manual_seed(7))(x, torch.tensor(0.0))
    assert torch.equal(last, x)


def test_nearly_noiseless_output_is_consistent_with_y():
    """At 60 dB the range correction is full (λ_i = 1) until the last steps: M x̂ ≈ y to the noise level.

    The residual ‖M x̂ − y‖ / sqrt(2k) must be within a few noise std (sqrt(N0/2) = 7e-4) plus the
    last step's unprojected denoising at σ_min = 0.002 (model space, i.e. 1e-3 pixels).
    """
    link, rx, prior, x = small_setup(batch=8, snr_db=60.0)
    res = ddnm_receiver(link, rx, prior, steps=30, generator=torch.Generator().manual_seed(0))
    resid = bmv_real(link.matrix(rx).double(), res.x_hat.flatten(1).double()) - complex_to_real(rx.y).double()
    rms = resid.pow(2).mean(1).sqrt()
    assert float(rms.max()) < 5e-3
    assert res.extras["rank"] == [2 * link.k] * 8


def bmv_real(a, v):
    return (a @ v[..., None]).squeeze(-1)


@pytest.mark.parametrize("snr_db", [-5.0, 10.0, 30.0])
def test_consistent_to_the_noise_level_and_better_than_pinv(snr_db):
    """At the default 100 steps the output agrees with y to within the channel noise at every SNR.

    The transmitted image itself has residual ‖M x − y‖ ≈ sqrt(N0/2) per real (measured 1.02×), and so has an
    exact posterior sample; DDNM's output must not be further from y than 1.2× that (measured 1.02 / 1.03 /
    1.00× at −5 / 10 / 30 dB; at 30 steps up to 1.34× at 30 dB, the last replaced level lying further above
    ν_i on a coarse grid), and its pixel RMSE must beat the pseudo-inverse's (measured: 0.101 vs 0.407 at
    −5 dB, 0.092 vs 0.294 at 10 dB, 0.051 vs 0.280 at 30 dB).
    """
    from diffcomm.receivers.linear import pinv_receiver

    link, rx, prior, x = small_setup(batch=16, snr_db=snr_db, seed=1)
    res = ddnm_receiver(link, rx, prior, steps=100, generator=torch.Generator().manual_seed(0))
    resid = bmv_real(link.matrix(rx).double(), res.x_hat.flatten(1).double()) - complex_to_real(rx.y).double()
    assert float(resid.pow(2).mean().sqrt()) < 1.2 * (rx.n0 / 2) ** 0.5
    rmse = float((res.x_hat - x).pow(2).mean().sqrt())
    assert rmse < 0.6 * float((pinv_receiver(link, rx).x_hat - x).pow(2).mean().sqrt())


def test_output_contract_and_reproducibility():
    link, rx, prior, _ = small_setup(batch=4)
    res = ddnm_receiver(link, rx, prior, steps=6, generator=torch.Generator().manual_seed(5))
    assert res.x_hat.shape == (4, 1, 4, 4) and res.x_hat.dtype == torch.float32
    assert 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1
    assert res.nfe == 6 and prior.calls == 6 and res.seconds > 0
    again = ddnm_receiver(link, rx, prior, steps=6, generator=torch.Generator().manual_seed(5))
    other = ddnm_receiver(link, rx, prior, steps=6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(res.x_hat, again.x_hat)
    assert not torch.equal(res.x_hat, other.x_hat)


@pytest.mark.parametrize("label,link,rx", bad_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_received_signal_raises_one_line(label, link, rx):
    with pytest.raises(DiffcommError) as err:
        ddnm_receiver(link, rx, GaussianPrior(*prior_moments()), steps=2)
    want = "receiver ddnm needs a linear link" if label == "nonlinear link" else "ddnm"
    assert "\n" not in str(err.value) and str(err.value).startswith(want)


@pytest.mark.parametrize("options", [{"steps": 0}, {"steps": True}, {"sigma_max": -1.0}, {"prior": "fmnist"}])
def test_bad_options_raise(options):
    link, rx, prior, _ = small_setup(batch=2)
    kwargs = {"steps": 2, **options}
    prior = kwargs.pop("prior", prior)
    with pytest.raises(DiffcommError, match="ddnm"):
        ddnm_receiver(link, rx, prior, **kwargs)
