import math

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.metrics import fidelity, ms_ssim, ms_ssim_min_size, ms_ssim_supported, psnr, ssim


def _smooth_images(b, c, h, w, seed=0):
    """Structured test images: low-pass random fields in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, c, max(h // 4, 2), max(w // 4, 2), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def test_psnr_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 16, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    mse = (x.double() - y.double()).square().flatten(1).mean(1)
    expected = 10 * torch.log10(1 / mse)
    got = psnr(x, y)
    assert got.shape == (5,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=0)
    # constant offset: MSE = d^2 exactly -> 20 log10(1/d)
    z = torch.full((2, 1, 8, 8), 0.25, dtype=torch.float64)
    torch.testing.assert_close(psnr(z, z + 0.125), torch.full((2,), 20 * math.log10(8), dtype=torch.float32))
    # data_range scales the peak: +20 log10(2) dB
    torch.testing.assert_close(psnr(x, y, data_range=2.0), got + 20 * math.log10(2), atol=1e-4, rtol=0)


def test_psnr_identical_images_capped():
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(psnr(x, x), torch.full((3,), 100.0))
    assert torch.isinf(psnr(x, x, max_db=None)).all()


def test_ssim_identity_and_constant_images_closed_form():
    x = _smooth_images(4, 3, 28, 28)
    torch.testing.assert_close(ssim(x, x), torch.ones(4), atol=1e-6, rtol=0)
    # constant images a and b: the contrast-structure term is C2/C2 = 1, so
    # SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * L)^2 (Wang et al. 2004, eq. 13)
    c1 = 0.01 ** 2
    for a, b in [(0.2, 0.8), (0.5, 0.6), (0.0, 0.1)]:
        xa, xb = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
        expected = (2 * a * b + c1) / (a * a + b * b + c1)
        # pytorch_msssim builds its Gaussian window in float32, so the window sums to 1 only to
        # ~1e-7; the variances a^2 * (w_sum - w_sum^2) ~ 1e-8 then shift the result by ~1e-5.
        assert float(ssim(xa, xb)) == pytest.approx(expected, abs=1e-4)


def test_ssim_decreases_with_noise():
    x = _smooth_images(4, 1, 28, 28, seed=1)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    values = [ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
    for hi, lo in zip(values, values[1:]):
        assert torch.all(lo < hi)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage_reference(channels):
    # scikit-image's implementation with Wang et al.'s settings is an independent reference.
    from skimage.metrics import structural_similarity

    x = _smooth_images(3, channels, 32, 30, seed=5).double()
    g = torch.Generator().manual_seed(6)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(3):
        ref = structural_similarity(x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-5)


def test_ssim_small_images_need_smaller_window():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(DiffcommError, match="win_size"):
        ssim(x, x)
    torch.testing.assert_close(ssim(x, x, win_size=7, sigma=1.0), torch.ones(2), atol=1e-6, rtol=0)


def test_ms_ssim_size_rules():
    assert ms_ssim_min_size() == 160
    assert ms_ssim_supported((1, 3, 161, 200)) and not ms_ssim_supported((1, 3, 160, 200))
    assert not ms_ssim_supported((2, 1, 28, 28))
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(DiffcommError, match="160.*SSIM") as exc:
        ms_ssim(x, x)
    assert "\n" not in str(exc.value)
    assert set(fidelity(x, x)) == {"psnr", "ssim"}  # skipped, not an error, in the bundle


def test_ms_ssim_identity_and_noise():
    x = _smooth_images(2, 3, 176, 176, seed=3)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(2), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(x.shape, generator=g)
    mild, strong = ms_ssim(x, (x + 0.05 * noise).clamp(0, 1)), ms_ssim(x, (x + 0.3 * noise).clamp(0, 1))
    assert torch.all(strong < mild) and torch.all(mild < 1)
    assert set(fidelity(x, x)) == {"psnr", "ssim", "ms_ssim"}


def test_input_checks():
    x = torch.rand(2, 1, 16, 16)
    cases = [
        (x, torch.rand(2, 1, 16, 17), "same shape"),
        (x[0], x[0], r"\(B, C, H, W\)"),
        (x, x.masked_fill(x > 0.9, float("nan")), "NaN"),
        (x, x * 2 + 0.1, r"\[0, 1\]"),
        (x - 0.5, x, r"\[0, 1\]"),
    ]
    for a, b, match in cases:
        for fn in (psnr, ssim):
            with pytest.raises(DiffcommError, match=match):
                fn(a, b)
    # tiny numerical overshoot is tolerated (clamped)
    assert torch.isfinite(psnr(x, (x + 1e-7).clamp(max=1 + 1e-7))).all()
    with pytest.raises(DiffcommError, match="unknown fidelity metric"):
        fidelity(x, x, metrics=("lpips",))


def test_psnr_equals_torchmetrics():
    """The closed form equals torchmetrics' PSNR per image (the library it replaced, to save its import)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, 17, 23, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = peak_signal_noise_ratio(y, x, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert torch.allclose(psnr(x, y), ref.float(), atol=1e-4)
