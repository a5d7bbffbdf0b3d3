"""diffusers adapter: UNet2DModel + scheduler as a prior, and our EDM prior in diffusers' format (offline)."""

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

from diffcomm.diffusion.precond import EDMDenoiser  # noqa: E402
from diffcomm.diffusion.unet import UNet  # noqa: E402
from diffcomm.errors import DiffcommError  # noqa: E402
from diffcomm.interop.diffusers import DiffusersPrior, export_prior, load_prior  # noqa: E402


def tiny_unet(size: int = 8, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, layers_per_block=1).eval()


def tiny_edm_prior(seed: int = 0) -> EDMDenoiser:
    torch.manual_seed(seed)
    net = UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(1,), emb_dim=16)
    with torch.no_grad():  # conv_out starts at zero; make F non-trivial
        net.conv_out.weight.normal_(0, 0.1)
        net.conv_out.bias.normal_(0, 0.1)
    # frozen like zoo.load and load_prior (CPU conv kernels differ by ~6e-7 between weights that do
    # and do not require grad, so a bitwise comparison needs both frozen)
    return EDMDenoiser(net, sigma_min=0.002, sigma_max=80.0).eval().requires_grad_(False)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_vp_prior_matches_the_schedulers_own_x0(prediction):
    # diffusers' DDPMScheduler.step computes x̂0 from the model output at integer t: our prior at
    # σ_t on x = x_t / sqrt(ᾱ_t) must give the same x̂0 (in the EDM convention x = x0 + σ ε).
    unet = tiny_unet()
    sched = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction, clip_sample=False)
    prior = DiffusersPrior(unet, sched)
    gen = torch.Generator().manual_seed(1)
    x_t = torch.randn(2, 1, 8, 8, generator=gen)
    for t in (3, 50, 99):
        ab = sched.alphas_cumprod[t].double()
        sigma = ((1 - ab) / ab).sqrt().float()
        with torch.no_grad():
            out = unet(x_t, torch.tensor([t, t])).sample
            ref = sched.step(out, t, x_t, generator=gen).pred_original_sample
            ours = prior(x_t / ab.sqrt().float(), sigma)
        torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    assert prior.sigma_min == pytest.approx(float(((1 - sched.alphas_cumprod[0]) / sched.alphas_cumprod[0]).sqrt()),
                                            rel=1e-5)
    ab_last = sched.alphas_cumprod[-1].double()
    assert prior.sigma_max == pytest.approx(float(((1 - ab_last) / ab_last).sqrt()), rel=1e-6) and prior.kind == "vp"
    assert torch.equal(prior.to_pixels(prior.to_model(torch.tensor([0.0, 0.25, 1.0]))), torch.tensor([0.0, 0.25, 1.0]))
    assert prior.to_model(torch.tensor([0.0, 1.0])).tolist() == [-1.0, 1.0]


def test_saved_and_reloaded_ddpm_pipeline_gives_the_same_denoiser_output(tmp_path):
    unet = tiny_unet()
    sched = DDIMScheduler(num_train_timesteps=50, prediction_type="v_prediction")
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp_path / "ddpm")
    assert (tmp_path / "ddpm" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    before, after = DiffusersPrior(unet, sched).requires_grad_(False), load_prior(tmp_path / "ddpm")
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.05, 1.0, 7.0])
    with torch.no_grad():
        torch.testing.assert_close(after(x, sigma), before(x, sigma), atol=0, rtol=0)
    assert after.prediction_type == "v_prediction"


def test_our_edm_prior_exported_and_reloaded_gives_the_same_output(tmp_path):
    prior = tiny_edm_prior()
    folder = export_prior(prior, tmp_path / "edm", image_size=8)
    assert (folder / "model_index.json").is_file() and (folder / "scheduler" / "scheduler_config.json").is_file()
    assert list((folder / "unet").glob("*.safetensors")) and not list(folder.rglob("*.bin"))
    back = load_prior(folder)
    assert back.kind == "edm" and (back.sigma_min, back.sigma_max) == (0.002, 80.0)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    for sigma in (0.01, 0.7, torch.tensor([2.0, 40.0])):
        with torch.no_grad():
            torch.testing.assert_close(back(x, sigma), prior(x, sigma), atol=0, rtol=0)


def test_exported_pipeline_samples_with_diffusers_own_scheduler(tmp_path):
    from diffcomm.interop.diffusers import load_pipeline

    pipe = load_pipeline(export_prior(tiny_edm_prior(), tmp_path / "edm", image_size=8))
    images = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_dps_runs_on_a_reloaded_diffusers_prior(tmp_path):
    from diffcomm.pipeline import build_link, decode

    DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(tmp_path / "p")
    prior = load_prior(tmp_path / "p")
    link = build_link("gaussian", (1, 8, 8), "1/4", "awgn", 10.0)
    rx = link.transmit(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                       generator=torch.Generator().manual_seed(1))
    res = decode("dps", link, rx, prior=prior, generator=torch.Generator().manual_seed(2), steps=3)
    assert res.x_hat.shape == (2, 1, 8, 8) and torch.isfinite(res.x_hat).all()
    assert 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1 and res.nfe == 3


def test_errors_are_one_line():
    from diffusers import EulerDiscreteScheduler

    with pytest.raises(DiffcommError, match="prediction_type"):
        DiffusersPrior(tiny_unet(), _bogus_scheduler())
    with pytest.raises(DiffcommError, match="only EDM priors"):
        export_prior(torch.nn.Identity(), "unused")
    assert DiffusersPrior(tiny_unet(), EulerDiscreteScheduler()).kind == "vp"
    with pytest.raises(DiffcommError, match="unconditional"):
        DiffusersPrior(tiny_unet(), DDPMScheduler())(torch.zeros(1, 1, 8, 8), 1.0, torch.tensor([0]))


def _bogus_scheduler():
    sched = DDPMScheduler()
    sched.register_to_config(prediction_type="bogus")
    return sched
