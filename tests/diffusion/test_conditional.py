"""The conditional diffusion decoder (diffcomm.diffusion.conditional): initialisation equals the prior,
classifier-free guidance reduces to its endpoints exactly, a training step on tiny data moves the
weights and the exported model rebuilds through the zoo; one-line errors for bad recipes."""

import pytest
import torch

from diffcomm import zoo
from diffcomm.diffusion.conditional import (
    ChannelCondition,
    ConditionalDenoiser,
    ConditionedUNet,
    ConditionSection,
    guided_denoiser,
    run_conditional_training,
    simulate_condition,
    validate_condition_config,
)
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.errors import DiffcommError

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(), num_classes=10, emb_dim=32)


def _condition(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ChannelCondition(torch.rand(b, 1, 28, 28, generator=g) * 2 - 1, torch.tensor([0.0, 7.0, 20.0])[:b],
                            torch.tensor([0.0, -4.0, 3.0])[:b])


def _randomised_model(seed=0):
    """A tiny conditional denoiser with every weight random (the zero-initialised condition paths too),
    so that the condition changes the output."""
    torch.manual_seed(seed)
    model = ConditionalDenoiser(ConditionedUNet(TINY))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn_like(p))
    return model.eval()


def test_a_conditional_network_started_from_a_prior_is_that_prior_for_any_condition():
    prior = zoo.load("fmnist-prior")
    model = ConditionalDenoiser(ConditionedUNet(prior.net.config))
    model.net.load_prior(prior.state_dict())
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for sigma in (0.05, 0.7, 20.0):
        ref = prior(x, torch.tensor(sigma))
        assert torch.allclose(model(x, torch.tensor(sigma), condition=_condition()), ref, atol=1e-6)
        assert torch.allclose(model(x, torch.tensor(sigma)), ref, atol=1e-6)


def test_the_condition_matters_once_trained_and_keep_zero_is_the_unconditional_model():
    model = _randomised_model()
    x, sigma, c = torch.randn(3, 1, 28, 28), torch.tensor(0.8), _condition()
    with torch.no_grad():
        cond, uncond = model(x, sigma, condition=c), model(x, sigma)
        assert (cond - uncond).abs().max() > 1e-3
        dropped = model(x, sigma, condition=c, keep=torch.zeros(3))
        assert torch.allclose(dropped, uncond, atol=1e-6)


@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])
def test_classifier_free_guidance_is_the_exact_combination_and_w0_is_the_conditional_model(w):
    """Project convention (Ho & Salimans eq. 6): D̃ = (1 + w) D(x | c) − w D(x | ∅). In the guidance-scale
    form γ = 1 + w, γ = 1 (w = 0) is the conditional denoiser and γ = 0 the unconditional one."""
    model = _randomised_model(1)
    x, sigma, c = torch.randn(3, 1, 28, 28), torch.tensor(1.3), _condition()
    with torch.no_grad():
        cond, uncond = model(x, sigma, condition=c), model(x, sigma)
        got = guided_denoiser(model, c, w)(x, sigma)
    assert torch.allclose(got, (1 + w) * cond - w * uncond, atol=1e-5)
    if w == 0:
        assert torch.equal(got, cond)


def test_simulated_conditions_cover_both_channels_and_the_snr_range():
    section = ConditionSection(init="fmnist-prior", snr_min_db=2.0, snr_max_db=6.0)
    jscc = {ch: zoo.load(section.jscc_name(ch)) for ch in section.channels}
    x = zoo.load("fmnist-prior").to_pixels(torch.zeros(1)) * 0 + torch.rand(32, 1, 28, 28,
                                                                             generator=torch.Generator().manual_seed(0))
    c = simulate_condition(jscc, x, section, torch.Generator().manual_seed(0))
    assert c.image.shape == x.shape and c.image.min() >= -1 and c.image.max() <= 1
    assert ((c.snr_db >= 2) & (c.snr_db <= 6)).all()
    fading = c.gain_db != 0                      # AWGN rows have gain exactly 0 dB, Rayleigh rows do not
    assert 0 < int(fading.sum()) < 32


def test_a_training_step_on_tiny_data_changes_the_weights_and_the_export_loads(tmp_path):
    config = {"name": "tiny-cdm", "condition": {"init": "fmnist-prior"}, "data": {"limit": 8},
              "train": {"steps": 2, "batch_size": 4, "checkpoint_every": 1, "snapshot_every": 1000, "threads": 1}}
    final = run_conditional_training(config, tmp_path, progress=False)
    assert final["steps"] == 2 and torch.isfinite(torch.tensor(final["final_loss"]))
    model = zoo.load_weights(tmp_path / "model.safetensors")
    assert isinstance(model, ConditionalDenoiser)
    prior = zoo.load("fmnist-prior")
    x = torch.randn(3, 1, 28, 28)
    assert (model(x, torch.tensor(0.5), condition=_condition()) - prior(x, torch.tensor(0.5))).abs().max() > 0


@pytest.mark.parametrize("change, message", [
    ({"condition": {"channels": ["ofdm"]}}, "channels"),
    ({"condition": {"snr_min_db": 10.0, "snr_max_db": 0.0}}, "snr_max_db"),
    ({"condition": {"nope": 1}}, "nope"),
    ({"data": {"cond_dropout": 0.1}}, "cond_dropout"),
    ({"extra": {}}, "extra"),
])
def test_bad_recipes_give_one_line_errors(change, message):
    with pytest.raises(DiffcommError, match=message) as err:
        validate_condition_config({"condition": {}, "train": {"steps": 1}, **change})
    assert "\n" not in str(err.value)


def test_an_init_model_of_another_kind_is_refused(tmp_path):
    config = {"condition": {"init": "fmnist-classifier"}, "data": {"limit": 4}, "train": {"steps": 1}}
    with pytest.raises(DiffcommError, match="EDM prior"):
        run_conditional_training(config, tmp_path, progress=False)
