"""The zoo: loading by config, refusing weights of another architecture, listing shipped models."""

import json
import math
from pathlib import Path

import pytest
import torch

from diffcomm import zoo
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.errors import DiffcommError
from diffcomm.training import save_model

TINY = UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(), num_classes=3, emb_dim=16)


def _save_tiny_prior(path):
    config = {"kind": "prior", "model": TINY.to_dict()}
    model = zoo.BUILDERS["prior"](config)
    save_model(path, model, config)
    return model, config


def test_round_trip_loads_identical_weights(tmp_path):
    model, config = _save_tiny_prior(tmp_path / "p.safetensors")
    loaded = zoo.load_weights(tmp_path / "p.safetensors")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_weights_for_another_architecture_are_refused(tmp_path):
    _save_tiny_prior(tmp_path / "p.safetensors")
    other = {"kind": "prior", "model": {**TINY.to_dict(), "base_channels": 16}}
    with pytest.raises(DiffcommError, match="does not match"):
        zoo.load_weights(tmp_path / "p.safetensors", other)
    classifier_cfg = {"kind": "classifier", "model": {}}
    with pytest.raises(DiffcommError, match="does not match"):
        zoo.load_weights(tmp_path / "p.safetensors", classifier_cfg)


def test_corrupt_or_missing_files_are_user_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "prior", "model": TINY.to_dict()}))
    with pytest.raises(DiffcommError, match="cannot read"):
        zoo.load_weights(bad)
    with pytest.raises(DiffcommError, match="no config"):
        zoo.load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "odd.json").write_text(json.dumps({"kind": "spaceship"}))
    (tmp_path / "odd.safetensors").write_bytes(b"")
    with pytest.raises(DiffcommError, match="unknown model kind"):
        zoo.load_weights(tmp_path / "odd.safetensors")


def test_unknown_name_lists_shipped_models():
    with pytest.raises(DiffcommError, match="unknown model"):
        zoo.load("no-such-model")


def test_every_shipped_model_loads_and_records_its_recipe_and_metrics():
    models = zoo.list_models()
    for name, config in models.items():
        assert "recipe" in config and "metrics" in config and "training" in config, name
        assert config["training"]["steps"] > 0
        zoo.load(name)


def test_every_shipped_model_matches_its_recipe_step_count():
    import tomllib

    for name, config in zoo.list_models().items():
        recipe = zoo.WEIGHTS_DIR.parent / "recipes" / Path(config["recipe"]).name
        recipe_cfg = tomllib.loads(recipe.read_text())
        steps = recipe_cfg["train"]["steps"]
        training = config["training"]
        if "kept_ema_of_steps" in training:  # EMA weights kept part-way (keep_ema_at) by a run of the recipe
            assert training["kept_ema_of_steps"] == steps, name
            assert training["steps"] in recipe_cfg["snapshot"]["keep_ema_at"], name
            continue
        assert steps == training["steps"], f"{name}: recipe says {steps} steps, weights have {training['steps']}"


def test_training_snapshots_keep_evaluations_only_last_per_step(tmp_path):
    from diffcomm.zoo.evaluate import training_snapshots

    log = tmp_path / "log.jsonl"
    rows = [{"step": 50, "loss": 0.3, "lr": 1e-3, "seconds": 1.0},
            {"step": 100, "loss": 0.2, "lr": 1e-3, "seconds": 2.0, "psnr_10dB": 18.0},
            {"step": 100, "loss": 0.2, "lr": 1e-3, "seconds": 9.0, "psnr_10dB": 18.5},  # rerun after resume
            {"step": 200, "loss": 0.1, "lr": 1e-3, "seconds": 3.0, "psnr_10dB": 19.0}]
    log.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 250, "lo')
    assert training_snapshots(log) == [{"step": 100, "loss": 0.2, "psnr_10dB": 18.5},
                                       {"step": 200, "loss": 0.1, "psnr_10dB": 19.0}]
    assert training_snapshots(tmp_path / "missing.jsonl") == []


def test_patch_prior_evaluation_measures_denoising_against_the_noisy_input(tmp_path):
    """A prior of a dataset without a classifier: test-patch denoising PSNR beside the noisy input's,
    whose value is known (σ in [-1, 1] is σ/2 in pixels: PSNR ≈ 20·log10(2/σ), clipping only raises it)."""
    from diffcomm.diffusion.precond import EDMDenoiser
    from diffcomm.diffusion.unet import UNet
    from diffcomm.zoo.evaluate import evaluate_patch_prior

    torch.manual_seed(0)
    config = UNetConfig(in_channels=3, base_channels=8, channel_mults=[1], num_res_blocks=1, attention_levels=[],
                        num_classes=0, emb_dim=16)
    prior = EDMDenoiser(UNet(config)).eval()
    m = evaluate_patch_prior(prior, "natural-patches?per_photo=4", n=4, steps=2, sigmas=(0.05, 1.0),
                             grid_path=tmp_path / "grid.png")
    assert m["dataset"] == "natural-patches" and m["test_patches"] == 768 and (tmp_path / "grid.png").is_file()
    for sigma in (0.05, 1.0):
        theory = 20 * math.log10(2 / sigma)
        assert m[f"noisy_psnr_sigma{sigma:g}"] > theory - 0.05  # clamping to [0, 1] never adds error
        assert sigma > 0.5 or m[f"noisy_psnr_sigma{sigma:g}"] < theory + 0.5  # little clipping at small σ
        assert math.isfinite(m[f"denoise_psnr_sigma{sigma:g}"])
    assert m["nn_l2_to_train_samples_median"] > 0 and m["nn_l2_to_train_test_patches_median"] > 0


def test_shipping_reuses_a_final_step_quality_snapshot_only(tmp_path):
    from diffcomm.zoo.evaluate import final_quality_snapshot

    run = tmp_path / "run"
    run.mkdir()
    row = {"step": 400, "loss": 0.2, "fd_cls_uncond_vs_test": 9.0, "fd_cls_real1000_vs_rest_of_test": 0.56,
           "conditional_accuracy": 0.97}
    (run / "log.jsonl").write_text(json.dumps({"step": 400, "loss": 0.2, "lr": 1e-4, "seconds": 1}) + "\n"
                                   + json.dumps(row) + "\n")
    config = {"training": {"steps": 400}}
    assert final_quality_snapshot(run, config)["fd_cls_uncond_vs_test"] == 9.0
    assert final_quality_snapshot(run, {"training": {"steps": 600}}) is None  # snapshot is not the final step


def test_shipped_priors_record_sample_quality_consistent_with_their_training_log():
    """Every shipped prior records its sample quality: FD-cls and CFG accuracy for Fashion-MNIST priors (the
    shipped classifier), test-patch denoising for the others; where the record reuses the training snapshot
    at the shipped step, the two agree exactly and the step is the recipe's (or one of its kept EMA steps)."""
    for name, config in zoo.list_models().items():
        if config["kind"] not in zoo.PRIOR_KINDS:
            continue
        m = config["metrics"]
        if config["data"]["dataset"] == "fashion-mnist":
            assert 0 < m["fd_cls_uncond_vs_test"] < 100 and 0.5 < m["conditional_accuracy"] <= 1, name
            assert m["fd_cls_uncond_vs_test"] > m.get("fd_cls_real1000_vs_rest_of_test", 0), name
        else:
            assert all(m[f"denoise_psnr_sigma{s:g}"] > m[f"noisy_psnr_sigma{s:g}"] for s in (0.2, 0.5, 1.0)), name
        if "metrics_source" in m:
            step = config["training"]["steps"]
            row = next(r for r in config["snapshots"] if r["step"] == step)
            assert row["fd_cls_uncond_vs_test"] == m["fd_cls_uncond_vs_test"], name
            assert row["conditional_accuracy"] == m["conditional_accuracy"], name
