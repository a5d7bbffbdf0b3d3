"""The ``diffcomm transmit`` contract: outputs, JSON fields, and one-line errors for bad input."""

import json
import math
import subprocess
import sys

import pytest
import torch

from diffcomm.cli import main
from diffcomm.data import read_image, write_image


@pytest.fixture
def image(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 56, 56, generator=g), 2)  # smooth 28x28 image
    path = tmp_path / "in.png"
    write_image(path, x)
    return path


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("channel", ["awgn", "rayleigh", "rician"])
@pytest.mark.parametrize("encoder", ["gaussian", "downsample"])
def test_transmit_writes_reconstruction_and_json(tmp_path, image, capsys, channel, encoder):
    out = tmp_path / "rec.png"
    code, stdout, _ = run_cli(["transmit", "--input", str(image), "--channel", channel, "--snr", "30", "--cbr",
                               "1/8", "--encoder", encoder, "--receiver", "pinv", "--out", str(out), "--json"],
                              capsys)
    assert code == 0
    record = json.loads(stdout)
    for key in ("psnr", "ssim", "snr_db", "cbr", "k", "encoder", "receiver", "channel", "nfe", "seconds"):
        assert key in record
    assert record["k"] == round(784 / 8) and record["cbr"] == pytest.approx(1 / 8)
    rec = read_image(out)
    assert rec.shape == (1, 1, 28, 28)
    # PSNR in the record is the PSNR of the file written (PNG quantisation aside).
    x = read_image(image)
    mse = float((rec - x).pow(2).mean())
    assert record["psnr"] == pytest.approx(-10 * torch.log10(torch.tensor(mse)).item(), abs=0.2)


def test_higher_snr_gives_better_downsample_reconstruction(tmp_path, image, capsys):
    psnrs = []
    for snr in ("0", "30"):
        code, stdout, _ = run_cli(["transmit", "--input", str(image), "--snr", snr, "--encoder", "downsample",
                                   "--receiver", "pinv", "--cbr", "1/8", "--out", str(tmp_path / f"{snr}.png"),
                                   "--json"], capsys)
        psnrs.append(json.loads(stdout)["psnr"])
    assert psnrs[1] > psnrs[0] + 3


@pytest.mark.parametrize("args, message", [
    (["--snr", "nan"], "finite"),
    (["--snr", "inf"], "finite"),
    (["--snr", "abc"], "number"),
    (["--snr", "500"], "SNR"),
    (["--snr", "10", "--cbr", "0"], "CBR"),
    (["--snr", "10", "--cbr", "3/2"], "CBR"),
    (["--snr", "10", "--cbr", "x"], "CBR"),
    (["--snr", "10", "--receiver", "nope"], "unknown receiver"),
    (["--snr", "10", "--encoder", "nope"], "encoder"),
    (["--snr", "10", "--receiver", "pigdm", "--encoder", "deepjscc"], "linear"),
    (["--snr", "10", "--csi", "none"], "blind"),
    (["--snr", "10", "--samples", "0"], "--samples must be an integer"),
    (["--snr", "10", "--samples", "two"], "--samples must be an integer"),
    (["--snr", "10", "--samples", "5000"], "--samples must be an integer"),
    (["--snr", "10", "--spread-out", "s.png"], "needs --samples"),
    (["--snr", "10", "--assumed-snr", "nan"], "--assumed-snr must be finite"),
    (["--snr", "10", "--assumed-snr", "abc"], "--assumed-snr must be a number"),
    (["--snr", "10", "--assumed-snr", "1e6"], "--assumed-snr: SNR must be finite and in"),
    (["--snr", "10", "--assumed-snr", "7", "--tile", "14"], "--assumed-snr is not available for tiled images"),
    (["--snr", "10", "--impairment", "adc", "--tile", "14"], "--impairment is not available for tiled"),
    (["--snr", "10", "--mimo", "2x2"], "applies to --channel mimo only"),
    (["--snr", "10", "--mimo-detector", "zf"], "applies to --channel mimo only"),
    (["--snr", "10", "--channel", "mimo", "--mimo", "two"], "NTxNR"),
    (["--snr", "10", "--channel", "mimo", "--mimo", "4x2"], "n_r >= n_t"),
    (["--snr", "10", "--channel", "mimo", "--mimo", "100x100"], "antennas"),
    (["--snr", "10", "--channel", "mimo", "--mimo-detector", "foo"], "invalid choice"),
    (["--snr", "10", "--channel", "mimo", "--mimo-correlation", "1.5"], "correlation"),
    (["--snr", "10", "--channel", "mimo", "--mimo-correlation", "high"], "correlation"),
    (["--snr", "10", "--channel", "mimo", "--csi", "estimated", "--pilots", "1"], "n_pilots >= n_t"),
    (["--snr", "10", "--channel", "mimo", "--mimo-precoding", "svd", "--csi", "estimated"], "svd precoding"),
    (["--snr", "10", "--impairment", "warp"], "unknown impairment"),
    (["--snr", "10", "--impairment", "adc:bits"], "KIND[:PARAM=VALUE"),
    (["--snr", "10", "--impairment", "adc:bitz=3"], "no parameter 'bitz'"),
    (["--snr", "10", "--impairment", "adc:bits=99"], "bits"),
    (["--snr", "10", "--impairment", "cfo:eps=0.01,modelled=maybe"], "modelled must be true or false"),
    (["--snr", "10", "--impairment", "clip:ratio=1.5,modelled=true"], "linear link"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, image, capsys, args, message):
    code, _, err = run_cli(["transmit", "--input", str(image), "--out", str(tmp_path / "o.png"), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message.lower() in lines[0].lower(), err
    assert not (tmp_path / "o.png").exists()


def test_missing_and_corrupt_inputs(tmp_path, capsys):
    code, _, err = run_cli(["transmit", "--input", str(tmp_path / "missing.png"), "--snr", "5",
                            "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "not found" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = run_cli(["transmit", "--input", str(bad), "--snr", "5", "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffcomm.cli", "transmit", "--input", str(tmp_path / "x.png"),
                           "--snr", "5", "--out", str(tmp_path / "o.png")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("transmit", "data", "train", "zoo"):
        assert command in out


def test_transmit_samples_reports_spread_and_agreement(tmp_path, image, capsys):
    out, spread = tmp_path / "rec.png", tmp_path / "spread.png"
    base = ["transmit", "--input", str(image), "--snr", "5", "--encoder", "gaussian", "--receiver", "pinv",
            "--out", str(out)]
    code, stdout, _ = run_cli([*base, "--samples", "3", "--spread-out", str(spread), "--json"], capsys)
    assert code == 0
    record = json.loads(stdout)
    assert record["samples"] == 3 and len(record["spread"]) == 1 and record["spread"][0] < 1e-5
    assert record["agreement"] == [1.0] and len(record["classes"][0]) == 3   # pinv is deterministic
    assert record["uncertainty_classifier"] == "fmnist-classifier" and read_image(spread).shape == (1, 1, 28, 28)
    code, stdout, _ = run_cli(base, capsys)
    assert code == 0 and "samples:" not in stdout and "spread" not in stdout
    code, stdout, _ = run_cli([*base, "--samples", "2"], capsys)
    assert code == 0 and "2 samples: spread 0.0000, agreement 1.000" in stdout
    code, stdout, _ = run_cli([*base, "--samples", "1", "--json"], capsys)
    assert code == 0 and "spread" not in json.loads(stdout)


def test_transmit_samples_refuses_tiling_in_one_line(tmp_path, capsys):
    big = tmp_path / "big.png"
    write_image(big, torch.rand(1, 1, 56, 56, generator=torch.Generator().manual_seed(0)))
    code, _, err = run_cli(["transmit", "--input", str(big), "--snr", "5", "--encoder", "deepjscc", "--receiver",
                            "deepjscc", "--samples", "2", "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tiled" in err


# ---- issue 16: --assumed-snr, --channel mimo, --impairment ------------------------------------------------------

def transmit_json(image, out, capsys, *extra):
    code, stdout, err = run_cli(["transmit", "--input", str(image), "--snr", "20", "--cbr", "1/8", "--encoder",
                                 "gaussian", "--receiver", "pinv", "--out", str(out), "--json", *extra], capsys)
    assert code == 0, err
    return json.loads(stdout)


def test_transmit_assumed_snr_is_recorded_and_keeps_the_channel(tmp_path, image, capsys):
    matched = transmit_json(image, tmp_path / "a.png", capsys)
    told = transmit_json(image, tmp_path / "b.png", capsys, "--assumed-snr", "23")
    assert "assumed_snr_db" not in matched
    assert told["assumed_snr_db"] == 23.0 and told["snr_db"] == 20.0
    # pinv does not use N0 and the noise is the true one: the same reconstruction, bit for bit
    assert told["psnr"] == matched["psnr"]
    assert torch.equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png"))
    code, stdout, _ = run_cli(["transmit", "--input", str(image), "--snr", "20", "--assumed-snr", "17", "--out",
                               str(tmp_path / "c.png")], capsys)
    assert code == 0 and "at 20 dB (receiver told 17 dB)" in stdout


@pytest.mark.parametrize("extra, want", [
    ([], {"n_t": 2, "n_r": 2, "detector": "mmse", "precoding": "none", "correlation": 0.0}),
    (["--mimo", "2x4", "--mimo-detector", "none", "--mimo-correlation", "0.3", "--csi", "estimated"],
     {"n_t": 2, "n_r": 4, "detector": "none", "precoding": "none", "correlation": 0.3}),
    (["--mimo", "4x4", "--mimo-detector", "zf", "--mimo-precoding", "svd"],
     {"n_t": 4, "n_r": 4, "detector": "zf", "precoding": "svd"}),
])
def test_transmit_over_mimo(tmp_path, image, capsys, extra, want):
    out = tmp_path / "rec.png"
    record = transmit_json(image, out, capsys, "--channel", "mimo", *extra)
    assert record["channel"] == "mimo" and read_image(out).shape == (1, 1, 28, 28)
    assert {k: record["mimo"][k] for k in want} == want
    n_t, k = want["n_t"], record["k"]
    assert record["channel_uses"] == -(-k // n_t) + record["pilots"]      # n_t symbols per channel use
    assert math.isfinite(record["psnr"])


def test_transmit_with_impairments(tmp_path, image, capsys):
    record = transmit_json(image, tmp_path / "a.png", capsys, "--impairment", "adc:bits=3",
                           "--impairment", "cfo:eps=0.002,modelled=true")
    assert record["impairments"] == [
        {"kind": "adc", "side": "rx", "modelled": False, "bits": 3, "full_scale": None, "loading": 3.0},
        {"kind": "cfo", "side": "rx", "modelled": True, "eps": 0.002}]
    assert "impairments" not in transmit_json(image, tmp_path / "b.png", capsys)
    # with MIMO and a mismatched SNR together
    record = transmit_json(image, tmp_path / "c.png", capsys, "--channel", "mimo", "--assumed-snr", "17",
                           "--impairment", "phase-noise:linewidth_ts=1e-4")
    assert record["impairments"][0]["kind"] == "phase-noise" and record["assumed_snr_db"] == 17.0


def test_new_flags_bad_values_exit_without_traceback(tmp_path, image):
    for extra in (["--channel", "mimo", "--mimo", "2by2", "--assumed-snr", "7"], ["--impairment", "adc:bits=x"]):
        proc = subprocess.run([sys.executable, "-m", "diffcomm.cli", "transmit", "--input", str(image), "--snr", "10",
                               "--out", str(tmp_path / "o.png"), *extra], capture_output=True, text=True)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert not (tmp_path / "o.png").exists()


def test_transmit_over_ofdm_with_and_without_isi(tmp_path, image, capsys):
    tdl = "profile=A,delay_spread=3e-7,fft_size=32,subcarrier_spacing=60e3"
    long_cp = transmit_json(image, tmp_path / "a.png", capsys, "--channel", "ofdm", "--ofdm", f"{tdl},cp_length=10")
    no_cp = transmit_json(image, tmp_path / "b.png", capsys, "--channel", "ofdm", "--ofdm", f"{tdl},cp_length=0")
    symbols = -(-long_cp["k"] // 32)                                        # OFDM symbols of the frame
    assert long_cp["ofdm"]["n_taps"] == 11 and long_cp["channel_uses"] == symbols * (32 + 10)    # + CP
    assert not long_cp["isi_modelled"] and no_cp["isi_modelled"] and no_cp["channel_uses"] == symbols * 32
    assert math.isfinite(no_cp["psnr"]) and read_image(tmp_path / "b.png").shape == (1, 1, 28, 28)


@pytest.mark.parametrize("extra, msg", [(["--ofdm", "cp_length=4"], "applies to --channel ofdm only"),
                                        (["--channel", "ofdm", "--ofdm", "cp_length"], "must look like"),
                                        (["--channel", "ofdm", "--ofdm", "cp_length=99"], "longer than the FFT"),
                                        (["--channel", "ofdm", "--ofdm", "fft_sise=8"], "takes options")])
def test_bad_ofdm_options_exit_with_one_line(tmp_path, image, extra, msg):
    proc = subprocess.run([sys.executable, "-m", "diffcomm.cli", "transmit", "--input", str(image), "--snr", "10",
                           "--out", str(tmp_path / "o.png"), *extra], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert msg in proc.stderr and not (tmp_path / "o.png").exists()
