"""Task-oriented JSCC: gradients flow through the channel (finite differences), the recipe trains on a
tiny config through ``diffcomm train taskjscc`` and resumes to the same weights, bad recipes are refused."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from diffcomm.cli import main
from diffcomm.errors import DiffcommError
from diffcomm.scenarios.taskjscc import TaskJSCC, TaskJSCCConfig, simulate, validate_taskjscc_config

TINY = TaskJSCCConfig(image_size=8, symbols=2, width=2, hidden=4, num_classes=3)


def _loss(model, x, y, snr, channel):
    return F.cross_entropy(simulate(model, x, snr, channel, torch.Generator().manual_seed(5)), y)


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_gradients_flow_through_the_channel_finite_differences(channel):
    torch.manual_seed(0)
    model = TaskJSCC(TINY).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    snr = torch.tensor([-5.0, 0.0, 3.0, 10.0, 15.0, 20.0], dtype=torch.float64)
    loss = _loss(model, x, y, snr, channel)
    loss.backward()
    # parameters on the transmitter side of the channel (first conv, output layer) and on the receiver side
    probes = [(model.enc[0][0].weight, (0, 0, 1, 2)), (model.enc_out.weight, (1, 3)), (model.head[0].weight, (0, 1))]
    eps = 1e-6
    for param, index in probes:
        analytic = float(param.grad[index])
        with torch.no_grad():
            old = float(param[index])
            param[index] = old + eps
            up = float(_loss(model, x, y, snr, channel))
            param[index] = old - eps
            down = float(_loss(model, x, y, snr, channel))
            param[index] = old
        numeric = (up - down) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-8), (param.shape, index)
    assert float(model.enc[0][0].weight.grad.abs().sum()) > 0   # the encoder learns through the channel


def test_power_is_normalised_like_every_link():
    from diffcomm.channels import normalize_power

    model = TaskJSCC(TINY)
    z, _ = normalize_power(model.encode(torch.rand(3, 1, 8, 8), torch.zeros(3)))
    assert torch.allclose(z.abs().pow(2).mean(1), torch.ones(3), atol=1e-5)


def _recipe(path, steps=4):
    path.write_text(f'''name = "tiny-taskjscc"
[model]
image_size = 28
symbols = 2
width = 4
hidden = 8
[data]
dataset = "fashion-mnist"
limit = 64
[train]
steps = {steps}
batch_size = 8
lr = 1e-3
warmup_steps = 1
checkpoint_every = 2
snapshot_every = 1000000
log_every = 1
threads = 1
''')
    return path


def test_recipe_trains_on_a_tiny_config_and_resumes(tmp_path, capsys):
    recipe = _recipe(tmp_path / "tiny.toml")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "taskjscc", "--config", str(recipe), "--out", str(a), "--no-progress"]) == 0
    out = capsys.readouterr().out
    first = json.loads(out[out.index("{"):])   # after the snapshot line
    assert first["steps"] == 4 and {"acc_-5dB", "acc_0dB", "acc_10dB"} <= set(first)
    assert main(["train", "taskjscc", "--config", str(recipe), "--out", str(a), "--steps", "6", "--no-progress"]) == 0
    assert "resuming from step 4" in capsys.readouterr().out
    assert main(["train", "taskjscc", "--config", str(recipe), "--out", str(b), "--steps", "6", "--no-progress"]) == 0
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    from diffcomm import zoo

    model = zoo.load_weights(a / "model.safetensors")          # the zoo builds the kind from its JSON
    assert isinstance(model, TaskJSCC) and model.k == 2
    ship = tmp_path / "zoo"
    from diffcomm.scenarios.taskjscc import ship_taskjscc

    config = ship_taskjscc(a, "tiny-taskjscc", recipe, weights_dir=ship)
    assert config["command"].startswith("diffcomm train taskjscc --config") and config["training"]["steps"] == 6
    assert config["metrics"]["test_images"] == 10000 and "accuracy_0dB" in config["metrics"]


@pytest.mark.parametrize("change,match", [
    ({"model": {"symbols": 0}}, "symbols"),
    ({"model": {"channel": "ofdm"}}, "channel"),
    ({"model": {"snr_min_db": 30.0}}, "snr_min_db"),
    ({"data": {"split": "test"}}, "unknown \\[data\\] key"),
    ({"wat": 1}, "unknown config section"),
])
def test_bad_recipes_are_one_line_errors(change, match):
    with pytest.raises(DiffcommError, match=match) as exc:
        validate_taskjscc_config({"model": {}, "data": {}, "train": {}, **change})
    assert "\n" not in str(exc.value)


def test_cli_refuses_a_bad_recipe_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nsymbols = 0\n")
    assert main(["train", "taskjscc", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "symbols" in err
    assert not (tmp_path / "o").exists()
