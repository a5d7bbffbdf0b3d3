"""The grid runner: record contents, saved images, determinism, resume, parallel workers, metrics."""

import os

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid, run_point
from diffcomm.eval import runner as runner_module
from diffcomm.eval.store import load_point_images
from diffcomm.metrics import psnr

from .evalcase import TINY, comparable

RECORD_FIELDS = ("key", "system", "receiver", "encoder", "dataset", "split", "n", "channel", "csi", "snr_db", "cbr",
                 "k", "seed", "metrics", "nfe", "seconds", "version", "git_revision", "machine", "timestamp", "notes",
                 "images", "options", "models")


def test_records_have_the_documented_fields(reference, tiny_plan):
    path, records = reference
    assert set(records) == {p.key for p in tiny_plan.points}
    raw = load_records(path)
    for r in raw:
        for name in RECORD_FIELDS:
            assert name in r, name
        assert r["k"] == 49 and r["n"] == 4 and r["nfe"] == 0
        for metric in ("psnr", "ssim"):
            m = r["metrics"][metric]
            assert m["n"] == 4 and m["confidence"] == 0.95
            assert m["ci_low"] <= m["mean"] <= m["ci_high"]
        for name in ("accuracy", "fd_cls", "kid_cls"):
            assert name in r["metrics"]
        assert set(r["seconds"]) == {"total", "per_image", "receiver"}
        assert r["machine"]["torch_threads"] == 1 and r["machine"]["torch"] == torch.__version__


def test_saved_images_match_the_recorded_metrics(reference):
    path, _ = reference
    for r in load_records(path):
        tensors = load_point_images(path, r)
        assert tensors["x"].shape == tensors["x_hat"].shape == (2, 1, 28, 28)
        # The per-image PSNR in the record is the PSNR of the saved reconstruction.
        assert psnr(tensors["x_hat"], tensors["x"]).tolist() == pytest.approx(r["per_image"]["psnr"][:2], abs=1e-4)
        assert r["metrics"]["psnr"]["mean"] == pytest.approx(sum(r["per_image"]["psnr"]) / 4, abs=1e-6)


def test_metrics_respond_to_snr_and_seed(reference):
    _, records = reference
    by = {(r["system"], r["channel"], r["snr_db"]): r["metrics"]["psnr"]["mean"] for r in records.values()}
    for system in ("lmmse@gaussian", "lmmse@downsample", "pinv@downsample"):
        for channel in ("awgn", "rayleigh"):
            assert by[(system, channel, 20.0)] > by[(system, channel, 0.0)] + 1.0
    p = plan(grid_from_mapping({**TINY, "receivers": "pinv@downsample", "channel": "rayleigh", "snr": "0",
                                "seeds": "0,1"}))
    a, b = (run_point(pt).record["metrics"]["psnr"]["mean"] for pt in p.points)
    assert a != b  # another seed draws another channel


def test_rerun_is_identical_and_resume_computes_nothing(reference, tiny_plan, tmp_path):
    ref_path, ref = reference
    out = tmp_path / "again.jsonl"
    summary = run_grid(tiny_plan, out, progress=False)
    assert summary.computed == len(tiny_plan.points) and summary.reused == 0
    assert comparable(load_records(out)) == ref
    before = out.read_bytes()
    again = run_grid(tiny_plan, out, progress=False)
    assert again.computed == 0 and again.reused == len(tiny_plan.points)
    assert out.read_bytes() == before
    assert [r["key"] for r in again.records] == [p.key for p in tiny_plan.points]


def test_two_workers_match_serial(reference, tmp_path):
    _, ref = reference
    grid = plan(grid_from_mapping({**TINY, "receivers": "pinv"}))  # no LMMSE prior fit: spawned workers are slow
    out = tmp_path / "parallel.jsonl"
    summary = run_grid(grid, out, workers=2, progress=False)
    assert summary.computed == len(grid.points) == 8
    records = load_records(out)
    assert comparable(records) == {p.key: ref[p.key] for p in grid.points}
    assert os.getpid() not in {r["machine"]["pid"] for r in records}  # computed in worker processes


def test_classifier_metrics_when_the_classifier_is_available(monkeypatch):
    from diffcomm.metrics.classifier import Classifier

    torch.manual_seed(0)
    net = Classifier().eval()
    monkeypatch.setattr(runner_module, "_classifier", lambda: net)
    point = plan(grid_from_mapping({**TINY, "receivers": "lmmse@downsample", "channel": "awgn",
                                    "snr": "20"})).points[0]
    m = run_point(point).record["metrics"]
    assert 0.0 <= m["accuracy"]["mean"] <= 1.0 and m["accuracy"]["n"] == 4
    assert m["fd_cls"] >= 0.0 and m["kid_cls"] is not None and 0.0 <= m["accuracy_original"] <= 1.0
    monkeypatch.setattr(runner_module, "_classifier", lambda: None)
    rec = run_point(point).record
    assert rec["metrics"]["accuracy"] is None and rec["metrics"]["fd_cls"] is None
    assert any("fmnist-classifier" in note for note in rec["notes"])


@pytest.mark.slow  # Sionna's start-up takes ~10 s on a loaded 2-core machine
def test_digital_baseline_point():
    pytest.importorskip("sionna")
    grid = plan(grid_from_mapping({"n": 4, "receivers": "digital", "snr": "30", "cbr": "1/2",
                                   "options": {"digital": {"codecs": ["jpeg"], "trials": 1}}}))
    rec = run_point(grid.points[0]).record
    assert rec["system"] == "digital" and rec["nfe"] == 0
    assert rec["digital"]["success_rate"] == 1.0 and rec["digital"]["config"]["codec"] == "jpeg"
    assert 0 < rec["channel_uses"] <= rec["k"] == 392
    assert rec["metrics"]["psnr"]["mean"] > 15.0


def test_resuming_with_reshipped_weights_is_refused(tiny_plan, tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    monkeypatch.setattr(runner_module, "point_models", lambda point: {"fmnist-prior": "a" * 16})
    run_grid(tiny_plan, out, progress=False)
    assert {r["models"]["fmnist-prior"] for r in load_records(out)} == {"a" * 16}
    assert run_grid(tiny_plan, out, progress=False).computed == 0  # same weights: plain resume
    before = out.read_bytes()
    monkeypatch.setattr(runner_module, "point_models", lambda point: {"fmnist-prior": "b" * 16})
    with pytest.raises(DiffcommError, match="other weights of fmnist-prior.*new --out") as err:
        run_grid(tiny_plan, out, progress=False)
    assert "\n" not in str(err.value) and out.read_bytes() == before


def test_records_name_the_weights_they_used(reference):
    from diffcomm import zoo

    assert all(r["models"] == {} for r in load_records(reference[0]))  # linear receivers, no classifier
    digest = zoo.weights_digest("fmnist-prior")
    assert len(digest) == 16 and int(digest, 16) >= 0 and digest == zoo.weights_digest("fmnist-prior")
