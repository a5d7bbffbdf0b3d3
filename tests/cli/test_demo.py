"""``diffcomm demo``: the preset runs through the grid runner, prints a table and total time, writes the
report; without the shipped weights it stops before any work with one line naming the missing model."""

import pytest

from diffcomm import DiffcommError
from diffcomm.cli import main
from diffcomm.eval import demo as demo_module
from diffcomm.eval import load_config, load_records
from diffcomm.eval.demo import PRESET, demo_plan


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def missing_weights() -> str | None:
    """The one-line reason the real demo cannot run here, or None when the weights are shipped."""
    try:
        demo_plan()
    except DiffcommError as exc:
        return str(exc)
    return None


def test_preset_is_the_documented_small_grid():
    cfg = load_config(PRESET)
    assert cfg["dataset"] == "fashion-mnist" and cfg["split"] == "test" and cfg["n"] == 8
    assert cfg["channel"] == ["awgn", "rayleigh"] and cfg["snr"] == [0, 10, 20]
    assert cfg["receivers"] == ["digital", "deepjscc@deepjscc", "dps@deepjscc", "hifi@deepjscc"]
    assert cfg["options"]["dps"]["steps"] <= 30 and cfg["options"]["hifi"]["steps"] <= 30


def test_digital_baseline_is_dropped_with_a_note_when_unavailable(monkeypatch, tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('n = 4\nreceivers = ["digital", "pinv@gaussian"]\nsnr = [10]\n[options.digital]\ntrials = 1\n')
    monkeypatch.setattr(demo_module, "digital_unavailable", lambda: "sionna missing")
    grid, notes = demo_plan(preset)
    assert {p.system for p in grid.points} == {"pinv@gaussian"}
    assert "skipping the digital baseline: sionna missing" in notes
    monkeypatch.setattr(demo_module, "digital_unavailable", lambda: None)
    grid, _ = demo_plan(preset)
    assert {p.system for p in grid.points} == {"digital", "pinv@gaussian"}


def test_demo_machinery_with_a_linear_preset(tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_text('n = 4\nreceivers = ["pinv@downsample", "pinv@gaussian"]\nchannel = ["awgn"]\n'
                      'snr = [0, 20]\nsave_images = 4\n')
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(["demo", "--out", str(out), "--preset", str(preset), "--quiet"], capsys)
    assert code == 0
    assert "pinv@downsample" in stdout and "psnr" in stdout and "total time:" in stdout
    assert len(load_records(out / "results.jsonl")) == 2 * 2
    assert (out / "report.html").is_file() and any((out / "plots").glob("*.svg"))
    code, stdout, _ = run_cli(["demo", "--out", str(out), "--preset", str(preset), "--quiet"], capsys)
    assert code == 0 and "reused 4 finished points" in stdout


@pytest.fixture
def stand_in_zoo(tmp_path, monkeypatch):
    """Randomly initialised stand-ins for the demo's shipped models (tiny architectures), in a temporary zoo."""
    import json

    import torch

    from diffcomm import zoo
    from diffcomm.eval import runner

    folder = tmp_path / "weights"
    folder.mkdir()
    configs = {"fmnist-prior": {"kind": "prior", "model": {"in_channels": 1, "base_channels": 8,
                                                            "channel_mults": [1, 2], "attention_levels": [],
                                                            "num_classes": 10, "emb_dim": 32}},
               "fmnist-classifier": {"kind": "classifier", "model": {"width": 8, "feature_dim": 16}}}
    for channel in ("awgn", "rayleigh"):
        configs[f"fmnist-deepjscc-{channel}-cbr16"] = {"kind": "jscc", "model": {"cbr": 1 / 16, "width": 8,
                                                                                  "channel": channel}}
    torch.manual_seed(0)
    for name, config in configs.items():
        model = zoo.BUILDERS[config["kind"]](config)
        (folder / f"{name}.json").write_text(json.dumps(config))
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{name}.safetensors"))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(zoo, "_CACHE", {})
    monkeypatch.delenv("DIFFCOMM_EVAL_NO_CLASSIFIER", raising=False)  # the demo reports classifier metrics
    runner._classifier.cache_clear()
    yield folder
    runner._classifier.cache_clear()


def test_demo_end_to_end_with_stand_in_weights(stand_in_zoo, tmp_path, capsys, monkeypatch):
    """The DeepJSCC decoder, DPS and HiFi-DiffCom run through the demo's grid runner (the digital baseline
    is tested in tests/eval/test_eval_runner.py; dropping it here saves Sionna's start-up)."""
    monkeypatch.setattr(demo_module, "digital_unavailable", lambda: "not needed in this test")
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli(["demo", "--out", str(out), "--n", "2", "--snr", "10", "--steps", "2",
                                    "--quiet"], capsys)
    assert code == 0, stderr
    records = load_records(out / "results.jsonl")
    expected = {"deepjscc", "dps@deepjscc", "hifi@deepjscc"}  # receiver == encoder: one name
    assert {r["system"] for r in records} == expected
    assert len(records) == len(expected) * 2  # awgn and rayleigh at 10 dB
    for r in records:
        assert r["n"] == 2 and r["k"] == 49 and r["metrics"]["psnr"]["n"] == 2
        assert r["nfe"] > 0 if r["receiver"] in ("dps", "hifi") else r["nfe"] == 0
        assert r["options"].get("steps") == (2 if r["receiver"] in ("dps", "hifi") else None)
        assert 0.0 <= r["metrics"]["accuracy"]["mean"] <= 1.0 and r["metrics"]["fd_cls"] >= 0.0
    assert "total time:" in stdout and "hifi@deepjscc" in stdout
    assert (out / "report.html").is_file()
    assert (out / "plots" / "accuracy_rayleigh_perfect_cbr-1-16.svg").is_file()


def test_demo_without_weights_fails_with_one_line_naming_the_model(tmp_path, capsys):
    reason = missing_weights()
    if reason is None:
        pytest.skip("the demo's weights are shipped; the missing-model path cannot be exercised")
    code, stdout, stderr = run_cli(["demo", "--out", str(tmp_path / "demo"), "--quiet"], capsys)
    assert code == 2 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "model 'fmnist-" in lines[0] and "is not shipped" in lines[0]
    assert not (tmp_path / "demo" / "results.jsonl").exists()


def test_demo_runs_for_real_on_shipped_weights(tmp_path, capsys):
    reason = missing_weights()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(["demo", "--out", str(out), "--n", "2", "--snr", "10", "--steps", "2", "--quiet"],
                              capsys)
    assert code == 0 and "total time:" in stdout
    records = load_records(out / "results.jsonl")
    systems = {r["system"] for r in records}
    assert {"deepjscc", "dps@deepjscc", "hifi@deepjscc"} <= systems
    assert all(r["nfe"] > 0 for r in records if r["receiver"] in ("dps", "hifi"))
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_full_demo(tmp_path, capsys):
    reason = missing_weights()
    if reason:
        pytest.skip(reason)
    code, stdout, _ = run_cli(["demo", "--out", str(tmp_path / "demo"), "--quiet"], capsys)
    assert code == 0 and "total time:" in stdout
    assert len(load_records(tmp_path / "demo" / "results.jsonl")) >= 3 * 2 * 3
