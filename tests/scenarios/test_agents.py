"""The agent-centric scenario: one-line config errors, channel-use accounting, the views, resume after kill -9."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffcomm.cli import main
from diffcomm.errors import DiffcommError
from diffcomm.eval.store import load_records
from diffcomm.scenarios import agents
from diffcomm.scenarios.agents import plan_from_mapping, run_scenario, view_encoder, view_masks

TINY = {"n": 8, "agents": 3, "snr_db": [10.0], "symbols": [8], "receivers": ["lmmse"], "batch_size": 8,
        "modes": ["centralised", "distributed", "local"], "rounds": [0, 2],
        "channels": ["awgn", "rayleigh", "awgn"], "snr_offsets_db": [0, -3, 3], "message_code": "polar16"}


@pytest.mark.parametrize("change, message", [
    ({"agents": 5}, "agents must be an integer in 2..4"),
    ({"views": "stripes"}, "unknown views 'stripes'"),
    ({"views": "quadrants"}, "needs agents = 4"),
    ({"receivers": ["hifi"]}, "hifi"),
    ({"receivers": ["nope"]}, "nope"),
    ({"rounds": [-1]}, "rounds must be integers"),
    ({"snr_offsets_db": [0, 1]}, "one offset per agent"),
    ({"channels": ["awgn", "ofdm", "awgn"]}, "channels must list"),
    ({"message_code": "turbo"}, "unknown label code"),
    ({"snr_db": [99]}, "snr_db must be numbers"),
    ({"modes": ["federated"]}, "modes must list"),
    ({"topology": "star"}, "unknown topology"),
    ({"bogus": 1}, "bogus"),
    ({"options": {"pigdm": {"steps": 5}}}, "names a receiver not in receivers"),
    ({"policy": {"symbols": [3]}}, "no shipped task-JSCC model"),
    ({"policy": {"power_db": [0, -3]}}, "increasing"),
    ({"policy": {"lambda_uses": 2.0}}, "lambda_uses"),
    ({"policy": {"unknown": 1}}, "unknown"),
])
def test_bad_configs_get_one_line_errors(change, message):
    with pytest.raises(DiffcommError, match=message) as err:
        plan_from_mapping({**TINY, **change})
    assert "\n" not in str(err.value)


def test_cli_bad_config_exits_2_without_traceback(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("agents = 9\n")
    assert main(["scenario", "agents", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "agents must be an integer" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_views_partition_and_encoder_sees_only_its_pixels():
    strips = view_masks("strips", 3)
    assert torch.equal(strips.sum(0), torch.ones(1, 28, 28, dtype=torch.long))
    quads = view_masks("quadrants", 4)
    assert torch.equal(quads.sum(0), torch.ones(1, 28, 28, dtype=torch.long))
    rand = view_masks("random", 3, coverage=0.4, seed=1)
    assert abs(float(rand.double().mean()) - 0.4) < 0.03          # 3 × 784 Bernoulli(0.4) draws: sd 0.01
    enc = view_encoder(rand[0], 8, seed=0)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(enc(x), enc(x * rand[0]))          # pixels outside the view do not matter


def test_channel_uses_count_every_view_and_every_consensus_message(tmp_path):
    grid = plan_from_mapping(TINY)
    summary = run_scenario(grid, tmp_path, progress=False)
    by = {(r["mode"], r["rounds"]): r for r in summary.records}
    assert by[("centralised", None)]["channel_uses"] == 3 * 8
    assert by[("distributed", 0)]["channel_uses"] == 3 * 8
    assert by[("distributed", 2)]["channel_uses"] == 3 * 8 + 2 * 3 * 8      # 2 rounds × 3 broadcasts × 8 uses
    assert by[("local", 0)]["channel_uses"] == 0
    assert by[("local", 2)]["channel_uses"] == 2 * 3 * 8 and by[("local", 2)]["messages"] == 6
    for r in summary.records:
        m = r["metrics"]
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["agreement"] <= 1 and m["psnr"] > 5
    assert by[("centralised", None)]["metrics"]["agreement"] == 1.0
    # overhearing the neighbours' views adds observations: every agent's exact posterior mean improves
    dist, local = by[("distributed", 0)]["metrics"], by[("local", 0)]["metrics"]
    assert all(d > lo for d, lo in zip(dist["psnr_per_agent"], local["psnr_per_agent"]))
    for name in ("summary.md", "tradeoff.json", "tradeoff.png", "compute.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(json.loads((tmp_path / "tradeoff.json").read_text())) == len(grid.points)


# The child runs the tiny grid and SIGKILLs itself in the middle of the third record's append.
SCRIPT = r"""
import json, os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import diffcomm.eval.store as store
from diffcomm.scenarios import agents
from diffcomm.scenarios.agents import plan_from_mapping, run_scenario
from test_agents import TINY
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
    assert summary.reused == 2 and summary.computed == len(grid.points) - 2
    keys = [r["key"] for r in load_records(out / "records.jsonl")]
    assert sorted(keys) == sorted(p.key for p in grid.points) and len(set(keys)) == len(keys)
    agents._DECODES.clear()                      # nothing reused from this process's earlier decodes
    fresh = run_scenario(grid, tmp_path / "fresh", progress=False)
    by_key = {r["key"]: r["metrics"] for r in summary.records}
    for r in fresh.records:                      # the resumed run gives the results of an uninterrupted one
        assert r["metrics"] == by_key[r["key"]]
