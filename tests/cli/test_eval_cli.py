"""``diffcomm eval``, ``plot`` and ``report`` from the command line: validation before any work, config
files, resume after ``kill -9`` mid-grid, and a partial last line left by an interrupted append."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from diffcomm.cli import main
from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid, strip_timing

TINY = ["--n", "4", "--receivers", "pinv,lmmse", "--encoders", "gaussian,downsample", "--channel", "awgn",
        "--snr", "0,20", "--save-images", "2", "--quiet"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def comparable(path):
    return {r["key"]: strip_timing(r) for r in load_records(path)}


@pytest.mark.parametrize("args, message", [
    (["--receivers", "pinv,nosuch"], "unknown receiver 'nosuch'"),
    (["--encoders", "gaussian,nosuch"], "unknown encoder 'nosuch'"),
    (["--channel", "awgn,fibre"], "unknown channel 'fibre'"),
    (["--snr", "0,ten"], "--snr: cannot parse 'ten'"),
    (["--snr", "0;10"], "--snr: cannot parse '0;10'"),
    (["--receivers", "deepjscc", "--encoders", "deepjscc", "--cbr", "1/4"], "no shipped DeepJSCC for CBR 0.25"),
    (["--n", "10001"], "larger than the fashion-mnist test split (10000 images)"),
    (["--cbr", "3/2"], "CBR must be in (0, 1]"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--address", "1.2.3.4:6379"], "--address needs --backend ray"),
])
def test_bad_settings_fail_with_one_line_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "r.jsonl"
    base = ["eval", "--n", "4", "--receivers", "pinv", "--encoders", "gaussian", "--snr", "0,10", "--out", str(out)]
    code, stdout, stderr = run_cli(base + args, capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffcomm eval: error: ") and message in lines[0]
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists() and not (tmp_path / "r.jsonl.d").exists()


def test_bad_config_key_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "g.toml"
    cfg.write_text('receivers = "pinv"\nsnr = [0]\nsnrs_db = [1]\n')
    code, _, stderr = run_cli(["eval", "--config", str(cfg), "--out", str(tmp_path / "r.jsonl")], capsys)
    assert code == 2 and "unknown grid setting 'snrs_db'" in stderr and len(stderr.strip().splitlines()) == 1


def test_config_file_equals_command_line_and_cli_overrides(tmp_path, capsys):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('n = 4\nreceivers = ["pinv", "lmmse"]\nencoders = ["gaussian", "downsample"]\n'
                   'channel = "awgn"\nsnr = [0, 20]\nsave_images = 2\nseeds = [5]\n')
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run_cli(["eval", *TINY, "--out", str(a)], capsys)[0] == 0
    code, stdout, _ = run_cli(["eval", "--config", str(cfg), "--seeds", "0", "--quiet", "--out", str(b)], capsys)
    assert code == 0 and "8 points: 8 computed" in stdout
    assert comparable(a) == comparable(b)


def test_prints_a_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["eval", *[a for a in TINY if a != "--quiet"], "--out", str(out)]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0 and "lmmse@gaussian" in stdout and "psnr" in stdout
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "8 points: 0 computed, 8 already in" in stdout


def test_skipped_pairs_are_noted(tmp_path, capsys):
    code, _, stderr = run_cli(["eval", "--n", "4", "--receivers", "pinv", "--encoders", "gaussian,deepjscc",
                               "--snr", "10", "--quiet", "--out", str(tmp_path / "r.jsonl")], capsys)
    assert code == 0 and "note: skipped pinv@deepjscc" in stderr


def test_resume_after_kill_mid_grid(tmp_path, capsys):
    """kill -9 after the first record; rerunning completes the grid with the same records as one run."""
    settings = {"n": 8, "receivers": "pinv", "encoders": "gaussian,downsample", "channel": "awgn,rayleigh",
                "snr": "0:30:6", "save_images": 2}  # 24 cheap points: the kill lands long before the end
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "diffcomm.cli", "eval", "--out", str(out), "--quiet"]
    for name, value in settings.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    total = 2 * 2 * 6
    done = len(load_records(out, repair=False))
    assert 1 <= done < total  # it really was interrupted mid-grid
    code, stdout, _ = run_cli(cmd[3:], capsys)  # the same command again (in-process: saves a start-up)
    assert code == 0
    assert f"{total} points: {total - done} computed, {done} already in" in stdout
    reference = tmp_path / "reference.jsonl"
    run_grid(plan(grid_from_mapping(settings)), reference, progress=False)
    assert comparable(out) == comparable(reference)
    assert len(out.read_text().splitlines()) == total  # no duplicates, no partial lines


def test_partial_last_line_is_repaired_on_rerun(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["eval", *TINY, "--out", str(out)]
    assert run_cli(args, capsys)[0] == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # as if killed mid-append
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "8 points: 5 computed, 3 already in" in stdout
    assert len(load_records(out)) == 8 and all(json.loads(line) for line in out.read_text().splitlines())


def test_plot_and_report_commands(tmp_path, capsys, monkeypatch):
    from diffcomm.eval import runner

    monkeypatch.setattr(runner, "_classifier", lambda: None)  # psnr/ssim only: 4 figures
    out = tmp_path / "r.jsonl"
    assert run_cli(["eval", *TINY, "--out", str(out)], capsys)[0] == 0
    code, stdout, _ = run_cli(["plot", str(out), "--out", str(tmp_path / "plots")], capsys)
    assert code == 0 and "wrote 4 figures" in stdout
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "psnr_awgn_perfect_cbr-1-16.png", "psnr_awgn_perfect_cbr-1-16.svg",
        "ssim_awgn_perfect_cbr-1-16.png", "ssim_awgn_perfect_cbr-1-16.svg"]
    code, _, _ = run_cli(["plot", str(out), "--out", str(tmp_path / "p2"), "--metrics", "ssim", "--format", "svg"],
                         capsys)
    assert code == 0 and [p.name for p in (tmp_path / "p2").iterdir()] == ["ssim_awgn_perfect_cbr-1-16.svg"]
    code, stdout, _ = run_cli(["report", str(out), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0 and (tmp_path / "rep" / "report.html").is_file()


@pytest.mark.parametrize("argv, message", [
    (["plot", "missing.jsonl", "--out", "p"], "results file missing.jsonl not found"),
    (["report", "missing.jsonl", "--out", "p"], "results file missing.jsonl not found"),
    (["plot", "EMPTY", "--out", "p"], "no records in"),
    (["plot", "EMPTY", "--out", "p", "--format", "gif"], "--format must list png and/or svg"),
])
def test_plot_report_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").write_text("")
    code, _, stderr = run_cli(argv, capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_negative_snr_lists_parse(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code, stdout, stderr = run_cli(["eval", "--n", "2", "--receivers", "pinv@downsample", "--snr", "-10,-2.5",
                                    "--quiet", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert sorted(r["snr_db"] for r in load_records(out)) == [-10.0, -2.5]
    code, stdout, _ = run_cli(["eval", "--n", "2", "--receivers", "pinv@downsample", "--snr", "-10:-5:2.5",
                               "--quiet", "--out", str(out)], capsys)
    assert code == 0 and "3 points: 2 computed, 1 already in" in stdout
