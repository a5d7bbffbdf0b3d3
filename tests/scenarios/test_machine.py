"""The machine scenario: planning errors are one line (CLI exit 2, no traceback), a run killed with -9
resumes without lost or duplicated records, and the report holds the frontiers."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from diffcomm.cli import main
from diffcomm.errors import DiffcommError
from diffcomm.eval.store import load_records
from diffcomm.scenarios.machine import plan_from_mapping, run_scenario, wilson_interval
from diffcomm.scenarios.report import best_per_budget, pareto

TINY = {
    "channels": ["awgn"], "snr_db": [0.0, 10.0], "batch_size": 10,
    "pipeline": [
        {"kind": "semantic", "codes": ["uncoded", "polar8"], "n": 20},
        {"kind": "taskjscc", "symbols": [8], "n": 20},
        {"kind": "reconstruct", "receiver": "pinv", "encoder": "gaussian", "symbols": [16], "n": 10},
    ],
}


def _with(**changes):
    cfg = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if key.startswith("p0_"):
            cfg["pipeline"][0][key[3:]] = value
        elif key.startswith("p1_"):
            cfg["pipeline"][1][key[3:]] = value
        else:
            cfg[key] = value
    return cfg


BAD = [
    (_with(pipeline=[{"kind": "telepathy"}]), "unknown pipeline 'telepathy'"),
    (_with(p1_symbols=[0]), "symbols must be integers"),
    (_with(p1_symbols=[]), "symbols is empty"),
    (_with(snr_db=[0, 100]), "out of range"),
    (_with(snr_db=[-40]), "out of range"),
    (_with(snr_db=[]), "snr_db is empty"),
    (_with(snr_db=["x"]), "snr_db must be a list of numbers"),
    (_with(p0_codes=["ldpc"]), "unknown label code"),
    (_with(p1_symbols=[3]), "not shipped"),
    (_with(p1_n=0), "n must be an integer"),
    (_with(p1_colour="red"), "unknown key 'colour'"),
    (_with(channels=["ether"]), "unknown channel"),
    (_with(pipeline=[]), "no pipeline"),
    (_with(pipeline=[{"kind": "reconstruct", "receiver": "nope", "encoder": "gaussian", "symbols": [8]}]),
     "unknown receiver"),
    (_with(pipeline=[{"kind": "taskjscc", "symbols": [8], "quantize": ["static"]}]), "not offered"),
    (_with(wat=1), "unknown scenario setting"),
]


@pytest.mark.parametrize("config,match", BAD)
def test_bad_configs_are_one_line_errors(config, match):
    with pytest.raises(DiffcommError, match=match) as exc:
        plan_from_mapping(config)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("config,match", BAD[:4])
def test_cli_exits_non_zero_without_traceback(tmp_path, capsys, config, match):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(config))
    assert main(["scenario", "machine", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_plan_lists_points_with_distinct_keys(tmp_path, capsys):
    grid = plan_from_mapping(TINY)
    assert len(grid.points) == 8 and len({p.key for p in grid.points}) == 8
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(TINY))
    assert main(["scenario", "machine", "--config", str(path), "--out", str(tmp_path / "o"), "--plan"]) == 0
    assert "semantic label polar8 awgn 10 dB" in capsys.readouterr().out


# The child runs the tiny grid and SIGKILLs itself in the middle of the third record's append,
# leaving a partial line, as a kill at the worst moment does.
SCRIPT = r"""
import json, os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import diffcomm.eval.store as store
from diffcomm.scenarios.machine import plan_from_mapping, run_scenario
from test_machine import TINY
real = store.ResultsWriter.append
calls = [0]
def append(self, record):
    calls[0] += 1
    if calls[0] == 3:
        line = json.dumps(record).encode()
        self._file.write(line[: len(line) // 2]); self._file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, record)
store.ResultsWriter.append = append
run_scenario(plan_from_mapping(TINY), sys.argv[1], progress=False)
"""


def test_resume_after_kill_has_no_lost_or_duplicated_records(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(Path(__file__).parent)), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(load_records(out / "records.jsonl", repair=False)) == 2
    grid = plan_from_mapping(TINY)
    summary = run_scenario(grid, out, progress=False)
    assert summary.reused == 2 and summary.computed == 6
    records = load_records(out / "records.jsonl")
    keys = [r["key"] for r in records]
    assert sorted(keys) == sorted(p.key for p in grid.points) and len(set(keys)) == len(keys)
    again = run_scenario(grid, out, progress=False)                # a finished grid: nothing recomputed
    assert again.computed == 0 and len(load_records(out / "records.jsonl")) == 8
    fresh = run_scenario(grid, tmp_path / "fresh", progress=False)
    by_key = {r["key"]: r["metrics"] for r in records}
    for r in fresh.records:                                         # same results as a run never interrupted
        assert r["metrics"] == by_key[r["key"]]
    for name in ("frontier.json", "summary.md", "frontier_uses_awgn.png", "frontier_compute_awgn.png"):
        assert (out / name).is_file(), name
    front = json.loads((out / "frontier.json").read_text())
    assert set(front["awgn"]) == {"0", "10"}
    rec = next(r for r in records if r["kind"] == "reconstruct")
    assert set(rec["receiver_options"]) == {"used", "calibrated", "given"}
    record = records[0]
    for field in ("channel_uses", "nfe", "flops_receiver", "int8_ops_receiver", "seconds_per_image",
                  "peak_mem_bytes_one_image", "receiver_weight_bytes"):
        assert field in record["efficiency"], field
    lo, hi = record["metrics"]["accuracy_ci95"]
    assert lo <= record["metrics"]["accuracy"] <= hi


def test_pareto_and_budgets():
    pts = [{"uses": 2, "accuracy": 0.5, "pipeline": "a"}, {"uses": 4, "accuracy": 0.4, "pipeline": "b"},
           {"uses": 8, "accuracy": 0.9, "pipeline": "b"}, {"uses": 8, "accuracy": 0.7, "pipeline": "a"},
           {"uses": 16, "accuracy": 0.85, "pipeline": "a"}]
    assert [(p["uses"], p["accuracy"]) for p in pareto(pts, "uses")] == [(2, 0.5), (8, 0.9)]
    rows = best_per_budget(pts, "uses")
    assert [(b["limit"], b["accuracy"]) for b in rows] == [(2, 0.5), (4, 0.5), (8, 0.9), (16, 0.9)]
    assert rows[0]["runner_up"] is None and rows[1]["runner_up"]["accuracy"] == 0.4   # the best of another pipeline
    assert rows[3]["runner_up"]["accuracy"] == 0.85


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0
