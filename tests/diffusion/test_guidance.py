"""Classifier-free guidance on two Gaussian "classes" (a mixture whose components are the classes)."""

from __future__ import annotations

import math

import pytest
import torch

from diffcomm.diffusion.gaussian import GaussianMixtureDenoiser
from diffcomm.diffusion.guidance import cfg_denoiser
from diffcomm.diffusion.samplers import NFECounter, sample_heun
from diffcomm.diffusion.schedules import karras_sigmas
from diffcomm.errors import DiffcommError

F64 = torch.float64
PRIOR = GaussianMixtureDenoiser(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.5]]),
                                torch.stack([0.3 * torch.eye(2), torch.tensor([[0.4, 0.1], [0.1, 0.2]])]))
NULL = PRIOR.null_label
X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
LABELS = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
SIG = torch.tensor([0.1, 0.3, 0.6, 1.0, 2.0, 4.0, 8.0, 0.05], dtype=F64)


def test_w0_is_conditional_and_formula_in_both_forms():
    cond = PRIOR(X, SIG, class_labels=LABELS)
    uncond = PRIOR(X, SIG)
    assert torch.allclose(cfg_denoiser(PRIOR, 0.0, NULL)(X, SIG, class_labels=LABELS), cond, atol=1e-12)
    for w in (0.5, 1.0, 3.0):
        d = cfg_denoiser(PRIOR, w, NULL)(X, SIG, class_labels=LABELS)
        assert torch.allclose(d, (1 + w) * cond - w * uncond, atol=1e-12)
        # ε form of DESIGN.md: ε̃ = (1 + w) ε(x|c) - w ε(x|∅), ε = (x - D) / σ
        eps = lambda den: (X - den) / SIG[:, None]                                  # noqa: E731
        assert torch.allclose(eps(d), (1 + w) * eps(cond) - w * eps(uncond), atol=1e-10)


def test_one_batched_call_and_scalar_sigma():
    counter = NFECounter(PRIOR)
    out = cfg_denoiser(counter, 2.0, NULL)(X, 0.5, class_labels=LABELS)
    assert counter.nfe == 1 and out.shape == X.shape
    assert torch.allclose(out, cfg_denoiser(PRIOR, 2.0, NULL)(X, torch.full((8,), 0.5), class_labels=LABELS))


def test_tensor_null_label_for_one_hot_models():
    def onehot_model(x, sigma, class_labels):           # class_labels (B, 2) one-hot, zeros = unconditional
        c = torch.where(class_labels.sum(1) == 0, NULL, class_labels.argmax(1))
        return PRIOR(x, sigma, class_labels=c)

    oh = torch.nn.functional.one_hot(LABELS, 2).double()
    d = cfg_denoiser(onehot_model, 1.5, torch.zeros(2))(X, SIG, class_labels=oh)
    assert torch.allclose(d, cfg_denoiser(PRIOR, 1.5, NULL)(X, SIG, class_labels=LABELS), atol=1e-12)


def test_guided_samples_move_away_from_unconditional_mean():
    """w = 0 samples class 1 exactly (5 SE); larger w pushes the class mean further from the
    unconditional mean along m_1 - m_uncond (the known CFG effect)."""
    n = 2000
    sigmas = karras_sigmas(40, 0.002, 80.0, dtype=F64)
    g = torch.Generator().manual_seed(1)
    x0 = PRIOR.sample(n, g)
    xt = x0 + 80.0 * torch.randn(x0.shape, generator=g, dtype=F64)
    labels = torch.ones(n, dtype=torch.long)
    m_unc = PRIOR.weights @ PRIOR.means
    direction = (PRIOR.means[1] - m_unc) / (PRIOR.means[1] - m_unc).norm()
    proj = []
    for w in (0.0, 1.0, 3.0):
        out = sample_heun(cfg_denoiser(PRIOR, w, NULL), xt, sigmas, extra_args={"class_labels": labels})
        proj.append(float((out.mean(0) - m_unc) @ direction))
        if w == 0.0:
            se = (torch.diag(PRIOR.covs[1]) / n).sqrt()
            assert ((out.mean(0) - PRIOR.means[1]) / se).abs().max() < 5
            c = out - out.mean(0)
            prod = c[:, :, None] * c[:, None, :]
            assert ((torch.cov(out.T) - PRIOR.covs[1]) / (prod.std(0) / math.sqrt(n))).abs().max() < 5
    se_proj = math.sqrt(float(direction @ PRIOR.covs[1] @ direction) / n)
    assert proj[1] > proj[0] + 5 * se_proj and proj[2] > proj[1] + 5 * se_proj, proj


def test_errors():
    D = cfg_denoiser(PRIOR, 1.0, NULL)
    with pytest.raises(DiffcommError):
        D(X, SIG)
    with pytest.raises(DiffcommError):
        D(X, SIG, class_labels=LABELS[:3])
    with pytest.raises(DiffcommError):
        cfg_denoiser(PRIOR, -1.0, NULL)
