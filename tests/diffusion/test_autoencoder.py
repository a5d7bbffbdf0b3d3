"""Latent diffusion (diffcomm.diffusion.autoencoder): shapes, config errors, the two training recipes on tiny
configs (determinism and exact resume after kill -9), shipping, and the shipped autoencoder's quality."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffcomm import zoo
from diffcomm.diffusion.autoencoder import (
    AutoEncoder,
    AutoEncoderConfig,
    LatentPrior,
    latent_denoiser,
    latent_scale_factor,
    run_autoencoder_training,
    run_latent_prior_training,
    validate_autoencoder_config,
    validate_latent_prior_config,
)
from diffcomm.errors import DiffcommError

TINY_AE = {"base_channels": 4, "num_res_blocks": 0, "latent_channels": 2}
TINY_TRAIN = {"steps": 6, "batch_size": 8, "checkpoint_every": 2, "snapshot_every": 10 ** 9, "warmup_steps": 2,
              "log_every": 1, "threads": 1}


def ae_config() -> dict:
    return {"name": "tiny-ae", "model": dict(TINY_AE), "loss": {"kl_weight": 1e-2},
            "data": {"dataset": "fashion-mnist", "limit": 32}, "train": dict(TINY_TRAIN)}


def latent_config(ae_run: Path) -> dict:
    return {"name": "tiny-latent", "autoencoder": {"source": str(ae_run)},
            "model": {"base_channels": 8, "channel_mults": [1], "num_res_blocks": 1, "attention_levels": [0],
                      "num_classes": 10, "emb_dim": 16},
            "data": {"dataset": "fashion-mnist", "limit": 32, "cond_dropout": 0.1}, "train": dict(TINY_TRAIN)}


# ---- shapes and the denoiser interface --------------------------------------------------------------


def test_shapes_and_the_latent_prior_interface():
    ae = AutoEncoder(AutoEncoderConfig(base_channels=8))
    x = torch.rand(3, 1, 28, 28)
    mean, logvar = ae.moments(x)
    assert mean.shape == logvar.shape == (3, 4, 7, 7) and ae.latent_shape == (4, 7, 7)
    rec = ae(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    prior = LatentPrior(ae, latent_denoiser(ae, {"base_channels": 8, "channel_mults": [1], "attention_levels": [0],
                                                 "emb_dim": 16, "num_classes": 10}), scale=2.5)
    z = prior.encode(x)
    assert torch.allclose(z, 2.5 * ae.encode(x))
    assert torch.allclose(prior.decode(z), rec, atol=1e-6)
    assert torch.equal(prior.to_model(x), z) and torch.allclose(prior.to_pixels(z).clamp(0, 1), rec, atol=1e-6)
    out = prior(torch.randn(3, *prior.latent_shape), torch.tensor([0.5, 1.0, 80.0]), torch.tensor([0, 3, 10]))
    assert out.shape == (3, 4, 7, 7) and torch.isfinite(out).all()
    assert prior.sigma_data == 1.0 and prior.num_classes == 10 and prior.image_shape == (1, 28, 28)
    # the state dict is the complete prior: autoencoder, denoiser and scale
    keys = prior.state_dict().keys()
    assert "scale" in keys and any(k.startswith("autoencoder.") for k in keys)
    assert any(k.startswith("denoiser.net.") for k in keys)


def test_a_rgb_autoencoder_of_another_size():
    ae = AutoEncoder(AutoEncoderConfig(in_channels=3, image_size=32, base_channels=4, latent_channels=3))
    assert ae.encode(torch.rand(2, 3, 32, 32)).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("call, message", [
    (lambda: AutoEncoderConfig.from_dict({"image_size": 30}), "divisible by 4"),
    (lambda: AutoEncoderConfig.from_dict({"latent_channels": 0}), "latent_channels"),
    (lambda: AutoEncoderConfig.from_dict({"base_channels": 2.5}), "integer"),
    (lambda: AutoEncoderConfig.from_dict({"latent_chanels": 4}), "unknown \\[model\\] key latent_chanels"),
    (lambda: latent_denoiser(AutoEncoder(AutoEncoderConfig(base_channels=4)), {"channel_mults": [1, 2],
                                                                              "attention_levels": []}),
     "not divisible by 2"),
    (lambda: LatentPrior(AutoEncoder(AutoEncoderConfig(base_channels=4)), None, scale=0.0), "scale"),
    (lambda: AutoEncoder(AutoEncoderConfig(base_channels=4)).encode(torch.rand(2, 1, 32, 32)), "shape"),
    (lambda: AutoEncoder(AutoEncoderConfig(base_channels=4)).decode(torch.rand(2, 4, 8, 8)), "shape"),
    (lambda: validate_autoencoder_config({"model": {}, "trian": {}}), "unknown config section trian"),
    (lambda: validate_autoencoder_config({"loss": {"kl_weight": -1}}), "kl_weight"),
    (lambda: validate_autoencoder_config({"data": {"cond_dropout": 0.1}}), "unknown \\[data\\] key cond_dropout"),
    (lambda: validate_latent_prior_config({"model": {"in_channels": 4}}), "in_channels is set by the autoencoder"),
    (lambda: validate_latent_prior_config({"autoencoder": {"path": "x"}}), "unknown \\[autoencoder\\] key"),
    (lambda: validate_latent_prior_config({"snapshot": {"quality_samples": 10}}), "quality_samples"),
    (lambda: run_latent_prior_training({"autoencoder": {"source": "no-such-model"}, "train": dict(TINY_TRAIN)},
                                       "/tmp/never-written"), "neither a finished run folder nor a shipped model"),
    (lambda: run_latent_prior_training({"autoencoder": {"source": "fmnist-classifier"}, "train": dict(TINY_TRAIN)},
                                       "/tmp/never-written"), "not an autoencoder"),
])
def test_config_errors_are_one_line(call, message):
    with pytest.raises(DiffcommError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_scale_factor_normalises_to_unit_std_and_is_rounded():
    z = torch.randn(1000, 4, 7, 7, generator=torch.Generator().manual_seed(0)) * 3.7
    s = latent_scale_factor(z)
    assert s == float(f"{s:.4g}") and abs(float((z * s).std()) - 1) < 1e-3
    with pytest.raises(DiffcommError, match="spread"):
        latent_scale_factor(torch.zeros(10, 4))


# ---- training: tiny configs, determinism, kill -9 ------------------------------------------------------

# The child trains and SIGKILLs itself right after the second checkpoint (step 4 of 6): no timing involved.
SCRIPT = r"""
import json, os, signal, sys, torch
torch.set_num_threads(1)
import diffcomm.training as T
from diffcomm.diffusion import autoencoder as A
kind, out, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
real_save, calls = T.atomic_save_safetensors, [0]
def save(path, tensors, metadata=None):
    real_save(path, tensors, metadata)
    calls[0] += 1
    if calls[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
T.atomic_save_safetensors = save
run = A.run_autoencoder_training if kind == "autoencoder" else A.run_latent_prior_training
run(config, out, progress=False)
"""


def _killed_then_resumed(kind: str, config: dict, out: Path) -> dict:
    import json

    proc = subprocess.run([sys.executable, "-c", SCRIPT, kind, str(out), json.dumps(config)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert (out / "checkpoint.safetensors").is_file() and not (out / "model.safetensors").exists()
    run = run_autoencoder_training if kind == "autoencoder" else run_latent_prior_training
    return run(config, out, progress=False)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    ae_final = run_autoencoder_training(ae_config(), root / "ae", progress=False)
    lp_final = run_latent_prior_training(latent_config(root / "ae"), root / "lp", progress=False)
    return root, ae_final, lp_final


def test_tiny_autoencoder_recipe_trains_and_resumes_exactly_after_kill_minus_9(tiny_runs, tmp_path):
    root, ref_final, _ = tiny_runs
    assert ref_final["steps"] == 6 and "test1000_psnr" in ref_final
    final = _killed_then_resumed("autoencoder", ae_config(), tmp_path / "ae")
    ref, got = load_file(root / "ae" / "model.safetensors"), load_file(tmp_path / "ae" / "model.safetensors")
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert final["final_loss"] == ref_final["final_loss"]
    model = zoo.load_weights(tmp_path / "ae" / "model.safetensors")
    assert isinstance(model, AutoEncoder) and model.latent_shape == (2, 7, 7)


def test_tiny_latent_prior_recipe_trains_and_resumes_exactly_after_kill_minus_9(tiny_runs, tmp_path):
    root, _, ref_final = tiny_runs
    final = _killed_then_resumed("latent-prior", latent_config(root / "ae"), tmp_path / "lp")
    ref, got = load_file(root / "lp" / "model.safetensors"), load_file(tmp_path / "lp" / "model.safetensors")
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert final["final_loss"] == ref_final["final_loss"]
    prior = zoo.load_weights(tmp_path / "lp" / "model.safetensors")
    assert isinstance(prior, LatentPrior) and prior.latent_shape == (2, 7, 7)
    cfg = prior.zoo_config
    assert cfg["kind"] == "latent-prior" and cfg["latent_scale"] == pytest.approx(float(prior.scale), rel=1e-6)
    # the frozen autoencoder is the one named by [autoencoder] source, bit for bit
    ae = load_file(root / "ae" / "model.safetensors")
    assert all(torch.equal(got[f"autoencoder.{k}"], v) for k, v in ae.items())
    # training the latent denoiser only: the scaled latents of the training images have unit std
    from diffcomm.data import get_dataset

    z = prior.encode(get_dataset("fashion-mnist", "train").images[:32])
    assert abs(float(z.std()) - 1) < 1e-3


def test_latent_prior_refuses_to_resume_on_another_autoencoder(tiny_runs, tmp_path):
    root, _, _ = tiny_runs
    other = ae_config()
    other["train"] = {**TINY_TRAIN, "seed": 1}
    run_autoencoder_training(other, tmp_path / "ae2", progress=False)
    cfg = latent_config(root / "ae")
    run_latent_prior_training({**cfg, "train": {**TINY_TRAIN, "steps": 2}}, tmp_path / "lp", progress=False)
    with pytest.raises(DiffcommError, match="another configuration") as err:
        run_latent_prior_training({**cfg, "autoencoder": {"source": str(tmp_path / "ae2")}}, tmp_path / "lp",
                                  progress=False)
    assert "\n" not in str(err.value)


def test_cli_trains_and_validates_the_new_kinds(tmp_path, capsys):
    from diffcomm.cli import main

    cfg = tmp_path / "ae.toml"
    cfg.write_text('[model]\nbase_channels = 4\nnum_res_blocks = 0\n[data]\nlimit = 16\n'
                   '[train]\nsteps = 2\nbatch_size = 8\nthreads = 1\n')
    assert main(["train", "autoencoder", "--config", str(cfg), "--out", str(tmp_path / "ae"), "--no-progress"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[autoencoder]\nsource = "x"\n[model]\nin_channels = 4\n')
    capsys.readouterr()
    assert main(["train", "latent-prior", "--config", str(bad), "--out", str(tmp_path / "lp")]) == 2
    err = capsys.readouterr().err.strip()
    assert "in_channels is set by the autoencoder" in err and "\n" not in err and not (tmp_path / "lp").exists()


def test_ship_autoencoder_records_test_psnr(tiny_runs, tmp_path):
    from diffcomm.zoo.evaluate import ship

    root, _, _ = tiny_runs
    config = ship(root / "ae", "tiny-ae", "recipe.toml", weights_dir=tmp_path, docs_dir=tmp_path)
    assert config["metrics"]["test_images"] == 10_000 and config["metrics"]["test_reconstruction_psnr"] > 5
    assert config["training"]["steps"] == 6 and config["command"].startswith("diffcomm train autoencoder")
    assert (tmp_path / "tiny-ae.safetensors").is_file()
    assert isinstance(zoo.load_weights(tmp_path / "tiny-ae.safetensors"), AutoEncoder)


# ---- the shipped models ----------------------------------------------------------------------------

# measured at shipping: 26.35 dB on the whole test split (fmnist-autoencoder.json), 26.54 dB on the first 500
# test images; the floor is 0.5 dB below the lower
SHIPPED_AE_PSNR_FLOOR = 25.85


def test_shipped_autoencoder_reconstructs_test_images_above_its_floor():
    from diffcomm.data import get_dataset
    from diffcomm.metrics import psnr

    ae = zoo.load("fmnist-autoencoder")
    x = get_dataset("fashion-mnist", "test").images[:500]
    with torch.no_grad():
        value = float(psnr(ae(x), x).mean())
    assert value > SHIPPED_AE_PSNR_FLOOR, value
    assert zoo.model_config("fmnist-autoencoder")["metrics"]["test_reconstruction_psnr"] > SHIPPED_AE_PSNR_FLOOR


def test_shipped_latent_prior_is_complete_and_small():
    prior = zoo.load("fmnist-latent-prior")
    assert isinstance(prior, LatentPrior) and prior.latent_shape == (4, 7, 7)
    assert (zoo.WEIGHTS_DIR / "fmnist-latent-prior.safetensors").stat().st_size < 3 * 2 ** 20
    ae = zoo.load("fmnist-autoencoder")
    state = prior.state_dict()
    # it carries the shipped autoencoder, bit for bit
    assert all(torch.equal(state[f"autoencoder.{k}"], v) for k, v in ae.state_dict().items())
    cfg = zoo.model_config("fmnist-latent-prior")
    assert cfg["metrics"]["fd_cls_uncond_vs_test"] > 0 and 0 <= cfg["metrics"]["conditional_accuracy"] <= 1
    assert "fmnist-latent-prior" not in zoo.PRIOR_KINDS and cfg["kind"] not in zoo.PRIOR_KINDS
