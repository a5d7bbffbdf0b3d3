"""``diffcomm tune``: a tiny calibration end to end, its use by ``diffcomm transmit --json``, and one-line
errors (exit status 2, nothing written) for bad input."""

import json

import pytest
import torch

from diffcomm import calibration
from diffcomm.cli import main
from diffcomm.data import write_image


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cal_file(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    monkeypatch.setenv(calibration.CALIBRATION_ENV, str(path))
    return path


def test_tune_writes_entries_that_transmit_then_uses(cal_file, tmp_path, capsys):
    code, stdout, stderr = run_cli(["tune", "dps", "--encoder", "gaussian", "--channel", "awgn", "--snr", "5", "20",
                                    "--steps", "1", "--images", "2", "--values", "zeta=0.5,4", "--reference",
                                    "zeta=3", "--quiet"], capsys)
    assert code == 0, stderr
    entries = calibration.load_calibration(cal_file)
    assert sorted(e["snr_db"] for e in entries.values()) == [5.0, 20.0]
    assert all(e["command"].startswith("diffcomm tune dps --encoder gaussian") for e in entries.values())
    assert "zeta=" in stdout and "stored in" in stdout
    chosen = next(e for e in entries.values() if e["snr_db"] == 20.0)["values"]["zeta"]

    image = tmp_path / "in.png"
    write_image(image, torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    args = ["transmit", "--input", str(image), "--snr", "18", "--encoder", "gaussian", "--receiver", "dps",
            "--steps", "1", "--out", str(tmp_path / "rec.png"), "--json"]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    record = json.loads(stdout)
    assert record["calibrated"] == {"zeta": {"value": chosen, "snr_db": 20.0, "steps": 1}}
    assert record["options_used"]["zeta"] == chosen
    code, stdout, _ = run_cli([*args, "--option", "zeta=2.5"], capsys)
    record = json.loads(stdout)
    assert code == 0 and record["calibrated"] == {} and record["options_used"]["zeta"] == 2.5


@pytest.mark.parametrize("args, msg", [
    (["tune", "nope", "--snr", "10"], "unknown receiver"),
    (["tune", "pinv", "--snr", "10"], "no strength options"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "abc"], "--snr"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "10", "10"], "twice"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "10", "--channel", "wormhole"], "unknown channel"),
    (["tune", "pigdm", "--encoder", "deepjscc", "--snr", "10"], "linear link"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "10", "--values", "kappa=1,2"], "not a strength option"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "10", "--values", "zeta"], "NAME=V1,V2"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "10", "--images", "0"], "--images"),
    (["tune", "dps", "--encoder", "gaussian", "--snr", "10", "--images", "999999"], "requested"),
    (["tune", "dps"], "required"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cal_file, capsys, args, msg):
    code, _, stderr = run_cli([*args, "--quiet"], capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and msg in lines[0] and "Traceback" not in stderr, stderr
    assert not cal_file.exists()
