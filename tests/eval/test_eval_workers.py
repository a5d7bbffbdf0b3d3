"""Worker processes of ``diffcomm eval --workers N`` die with their parent (kill -9 included), the rerun
completes with the records of a serial run, and a rerun of a finished grid with workers exits 0."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from diffcomm.cli import main
from diffcomm.eval import load_records

from .evalcase import TINY, comparable

ARGS = ["--n", str(TINY["n"]), "--receivers", TINY["receivers"], "--encoders", TINY["encoders"],
        "--channel", TINY["channel"], "--snr", TINY["snr"], "--cbr", TINY["cbr"], "--save-images", "2",
        "--per-image", "--quiet"]


def children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def poll(predicate, attempts: int = 1200, pause: float = 0.1) -> bool:
    """Wait for ``predicate`` (a generous bound so that a broken build fails instead of hanging)."""
    for _ in range(attempts):
        if predicate():
            return True
        time.sleep(pause)
    return predicate()


def test_kill_minus_9_of_eval_leaves_no_worker_and_the_rerun_matches_serial(tmp_path, reference):
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "diffcomm", "eval", *ARGS, "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert poll(lambda: len(children(proc.pid)) >= 2 or proc.poll() is not None)
        workers = children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert workers
    assert poll(lambda: not any(alive(p) for p in workers)), [p for p in workers if alive(p)]
    assert main(["eval", *ARGS, "--workers", "2", "--out", str(out)]) == 0
    assert comparable(load_records(out)) == reference[1]


def test_rerun_of_a_finished_grid_with_workers_exits_0(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["eval", *ARGS, "--out", str(out)]) == 0
    before = out.read_bytes()
    assert main(["eval", *ARGS, "--workers", "2", "--out", str(out)]) == 0
    assert out.read_bytes() == before
    assert "points: 0 computed" in capsys.readouterr().out


def test_demo_rerun_with_workers_exits_0(tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_text('n = 4\nreceivers = ["pinv@gaussian"]\nchannel = ["awgn"]\nsnr = [0, 20]\nsave_images = 2\n')
    args = ["demo", "--out", str(tmp_path / "demo"), "--preset", str(preset), "--quiet"]
    assert main(args) == 0
    assert main([*args, "--workers", "2"]) == 0
    assert "reused 2 finished points" in capsys.readouterr().out


def test_a_symlinked_results_file_shares_the_lock_and_gets_each_record_once(tmp_path):
    real = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    from diffcomm.errors import DiffcommError
    from diffcomm.eval import ResultsWriter

    with ResultsWriter(real):
        try:
            with ResultsWriter(link):
                raise AssertionError("the symlink bypassed the lock")
        except DiffcommError as exc:
            assert "another run is writing" in str(exc)
    assert main(["eval", *ARGS, "--out", str(real)]) == 0
    assert main(["eval", *ARGS, "--out", str(link)]) == 0
    keys = [r["key"] for r in load_records(real)]
    assert len(keys) == len(set(keys)) == 16
