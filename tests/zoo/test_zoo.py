"""The zoo: loading by config, refusing weights of another architecture, listing shipped models."""

import json
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
        steps = tomllib.loads(recipe.read_text())["train"]["steps"]
        assert steps == config["training"]["steps"], f"{name}: recipe says {steps} steps, weights have " \
                                                     f"{config['training']['steps']}"


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
