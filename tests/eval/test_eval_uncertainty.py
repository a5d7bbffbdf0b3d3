"""Uncertainty in the evaluation grid: the posterior_samples setting (plan-time checks, stable keys),
the runner's spread / agreement / wrong-class AUROC metrics, and the table columns."""

import pytest
import torch

import diffcomm.eval.runner as runner_module
from diffcomm import DiffcommError
from diffcomm.eval import grid_from_mapping, plan, results_table
from diffcomm.eval.runner import run_point
from diffcomm.receivers.base import RECEIVERS, ReceiverResult, get_spec, register_receiver

from .evalcase import TINY

BASE = {"n": 6, "snr": "0", "receivers": "pinv", "encoders": "gaussian", "save_images": 0, "per_image": True}


def test_posterior_samples_is_in_the_key_only_when_set():
    off = plan(grid_from_mapping(BASE)).points[0]
    one = plan(grid_from_mapping({**BASE, "posterior_samples": 1})).points[0]
    on = plan(grid_from_mapping({**BASE, "posterior_samples": "8"})).points[0]
    assert off.key == one.key and "posterior_samples" not in off.key and one.posterior_samples is None
    assert on.posterior_samples == 8 and on.identity()["posterior_samples"] == 8 and on.key != off.key
    assert on.channel_key == off.channel_key            # the same channel realisations with and without samples


@pytest.mark.parametrize("bad", [0, -1, "x", 2.5, True, 5000])
def test_bad_posterior_samples_are_one_line_errors_at_plan_time(bad):
    with pytest.raises(DiffcommError, match="posterior_samples") as err:
        plan(grid_from_mapping({**BASE, "posterior_samples": bad}))
    assert "\n" not in str(err.value)


def test_deterministic_receiver_record_with_samples(monkeypatch):
    """pinv: spread 0, agreement 1, AUROCs 0.5 (all ties) or undefined; x_hat as without samples."""
    from diffcomm.metrics.classifier import Classifier

    torch.manual_seed(0)
    net = Classifier().eval()
    monkeypatch.setattr(runner_module, "_classifier", lambda: net)
    plain = run_point(plan(grid_from_mapping(BASE)).points[0]).record
    rec = run_point(plan(grid_from_mapping({**BASE, "posterior_samples": 3})).points[0]).record
    m = rec["metrics"]
    assert rec["posterior_samples"] == 3 and rec["nfe"] == plain["nfe"] == 0
    assert rec["per_image"]["psnr"] == pytest.approx(plain["per_image"]["psnr"], abs=1e-4)
    assert m["spread"]["mean"] == pytest.approx(0.0, abs=1e-6) and m["agreement"]["mean"] == 1.0
    assert m["spread"]["n"] == m["agreement"]["n"] == 6 and len(rec["per_image"]["agreement"]) == 6
    for name in ("auroc_disagreement", "auroc_spread"):
        assert m[name] is None or (m[name]["mean"] == 0.5 and m[name]["positives"] + m[name]["negatives"] == 6)
    assert "spread" not in plain["metrics"] and "posterior_samples" not in plain


@pytest.fixture
def noisy_receiver():
    """A stochastic stand-in receiver: pinv plus generator-driven noise (so samples disagree)."""
    pinv = get_spec("pinv").fn

    @register_receiver("noisy-test", description="pinv + N(0, 0.3²) noise", link="linear")
    def noisy(link, rx, prior=None, *, generator=None):
        x = pinv(link, rx).x_hat
        return ReceiverResult((x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(0, 1), nfe=1)

    yield "noisy-test"
    RECEIVERS.pop("noisy-test")


def test_runner_records_uncertainty_metrics_and_the_table_shows_them(noisy_receiver, monkeypatch):
    """With the shipped classifier: summaries, and AUROCs equal to the definition recomputed from the saved
    first samples (their labels vs the true ones) and the per-image scores."""
    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.metrics.classifier import predict
    from diffcomm.metrics.uncertainty import auroc

    monkeypatch.setattr(runner_module, "_classifier", lambda: zoo.load("fmnist-classifier"))
    n = 16
    grid = plan(grid_from_mapping({**BASE, "n": n, "receivers": f"{noisy_receiver}@gaussian", "snr": "0,20",
                                   "posterior_samples": 4, "batch_size": 5, "save_images": n}))
    labels = get_dataset("fashion-mnist", "test").labels[:n]
    outputs = [run_point(p) for p in grid.points]
    records = [o.record for o in outputs]
    defined = 0
    for out, rec in zip(outputs, records):
        m = rec["metrics"]
        assert rec["posterior_samples"] == 4 and rec["nfe"] == 1
        assert m["spread"]["n"] == n and m["spread"]["mean"] > 0.05 and 0 < m["agreement"]["mean"] <= 1
        assert m["spread"]["ci_low"] <= m["spread"]["mean"] <= m["spread"]["ci_high"]
        assert any("4 posterior samples per image" in note for note in rec["notes"])
        wrong = predict(zoo.load("fmnist-classifier"), out.tensors["x_hat"])[0].argmax(1) != labels
        for name, score in (("auroc_disagreement", [1 - a for a in rec["per_image"]["agreement"]]),
                            ("auroc_spread", rec["per_image"]["spread"])):
            if m[name] is None:
                assert int(wrong.sum()) in (0, n)
                continue
            defined += 1
            assert m[name]["positives"] == int(wrong.sum()) and m[name]["negatives"] == n - int(wrong.sum())
            assert m[name]["mean"] == pytest.approx(auroc(torch.tensor(score), wrong))
            assert 0 <= m[name]["ci_low"] <= m[name]["mean"] <= m[name]["ci_high"] <= 1 and m[name]["se"] >= 0
    assert defined > 0
    header, rows = results_table(records)
    for column in ("spread", "agreement", "auroc_disagreement", "auroc_spread"):
        assert column in header
    assert all(len(row) == len(header) for row in rows)


def test_spread_only_without_the_classifier(noisy_receiver, monkeypatch):
    monkeypatch.setattr(runner_module, "_classifier", lambda: None)
    point = plan(grid_from_mapping({**BASE, "receivers": f"{noisy_receiver}@gaussian", "posterior_samples": 2}))
    rec = run_point(point.points[0]).record
    assert rec["metrics"]["spread"]["mean"] > 0 and rec["metrics"]["agreement"] is None
    assert rec["metrics"]["auroc_disagreement"] is None and any("only the spread" in n for n in rec["notes"])


def test_tiny_grid_keys_are_unchanged_without_samples(tiny_plan):
    assert all(p.posterior_samples is None and "posterior_samples" not in p.key for p in tiny_plan.points)
    assert TINY.get("posterior_samples") is None
