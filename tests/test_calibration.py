"""Calibrated defaults: the validation split, a deterministic search that never reads the test split,
the lookup rule (nearest steps, then nearest SNR), decode's use of it, and grid keys that follow it."""

import json

import pytest
import torch

from diffcomm import calibration
from diffcomm.calibration import (
    calibrated_options,
    entry_key,
    load_calibration,
    save_entries,
    tune,
    validation_images,
    validation_indices,
)
from diffcomm.errors import DiffcommError
from diffcomm.pipeline import build_link, decode
from diffcomm.receivers.base import RECEIVERS, get_spec

VOLATILE = ("date", "seconds", "command", "git_revision")


@pytest.fixture
def cal_file(tmp_path, monkeypatch):
    """A private calibration file for the test (the shipped one is never read or written)."""
    path = tmp_path / "calibration.json"
    monkeypatch.setenv(calibration.CALIBRATION_ENV, str(path))
    return path


@pytest.fixture
def train_only(monkeypatch):
    """Any load of a split other than train raises (every dataset read goes through the registry)."""
    from diffcomm.data import datasets

    def guard(name, get):
        def load(split, **kw):
            if split != "train":
                raise AssertionError(f"calibration read the {split} split of {name}")
            return get(split, **kw)
        return load

    for name, get in list(datasets._REGISTRY.items()):
        monkeypatch.setitem(datasets._REGISTRY, name, guard(name, get))
    real_arrays = datasets._fashion_arrays

    def arrays(root, split):
        if split != "train":
            raise AssertionError(f"calibration read the Fashion-MNIST {split} files")
        return real_arrays(root, split)

    monkeypatch.setattr(datasets, "_fashion_arrays", arrays)


def entry(receiver="dps", encoder="gaussian", snr=0.0, steps=2, values=None, channel="awgn", shape=(1, 28, 28), k=49):
    values = values or {"zeta": 0.5}
    return {"key": entry_key(receiver, encoder, shape, k, channel, "perfect", steps, snr), "receiver": receiver,
            "encoder": encoder, "shape": list(shape), "k": k, "channel": channel, "csi": "perfect", "snr_db": snr,
            "steps": steps, "values": values}


def stable(entries):
    return [{k: v for k, v in e.items() if k not in VOLATILE} for e in entries]


def test_strength_options_are_declared_in_the_registry_with_valid_candidates():
    get_spec("dps")
    tunable = {name: spec.tunable() for name, spec in RECEIVERS.items() if spec.tunable()}
    assert set(tunable["dps"]) == {"zeta"} and set(tunable["hifi"]) == {"zeta", "lam_confirm"}
    assert set(tunable["diffpir"]) == {"lam", "zeta"} and "guidance_scale" in tunable["pigdm"]
    for name, grid in tunable.items():
        assert "steps" not in grid  # steps are never tuned
        spec = RECEIVERS[name]
        for option, values in grid.items():
            assert values and all(spec.options[option].check(name, option, v) == v for v in values)


def test_validation_split_is_a_seeded_subset_of_the_training_images(train_only):
    a, b = validation_indices(60_000, 8, seed=0), validation_indices(60_000, 8, seed=0)
    assert torch.equal(a, b) and not torch.equal(a, validation_indices(60_000, 8, seed=1))
    assert len(set(a.tolist())) == 8
    x, idx = validation_images("fashion-mnist", 4, seed=3)
    from diffcomm.data import get_dataset

    assert torch.equal(x, get_dataset("fashion-mnist", "train").images[idx]) and x.shape == (4, 1, 28, 28)
    with pytest.raises(DiffcommError, match="requested"):
        validation_indices(10, 11)


def test_tune_is_deterministic_for_a_seed_and_never_reads_the_test_split(cal_file, train_only):
    kw = dict(encoder="downsample", channels=["awgn"], snrs=[10], steps=2, n_images=2, seed=0,
              values={"lam": [1.0, 8.0], "zeta": [0.0, 1.0]}, save=False)
    first = tune("diffpir", **kw)
    again = tune("diffpir", **kw)
    assert stable(first) == stable(again)
    e = first[0]
    assert e["validation"] == {**e["validation"], "split": "train", "n": 2, "seed": 0}
    assert e["steps"] == 2 and set(e["values"]) == {"lam", "zeta"}
    best = max(e["candidates"], key=lambda c: c["psnr"])
    assert e["values"] == best["options"] and e["psnr"] == best["psnr"]
    assert e["default"]["options"] == {"lam": 1.0, "zeta": 1.0}  # the search starts at the signature defaults
    other = tune("diffpir", **{**kw, "seed": 1})
    assert other[0]["validation"]["indices_sha256"] != e["validation"]["indices_sha256"]
    assert not cal_file.exists()  # save=False writes nothing


def test_tune_stores_merged_entries_and_a_reference(cal_file, train_only):
    save_entries([entry(snr=99.0)])
    out = tune("dps", encoder="gaussian", channels=["awgn"], snrs=[5], steps=1, n_images=2,
               values={"zeta": [0.5, 2.0]}, reference={"zeta": 3.0})
    stored = load_calibration()
    assert out[0]["key"] in stored and entry(snr=99.0)["key"] in stored  # merged with what was there
    assert out[0]["reference"]["options"] == {"zeta": 3.0}
    assert {c["options"]["zeta"] for c in out[0]["candidates"]} == {1.0, 0.5, 2.0}  # default + grid, not the reference
    assert json.loads(cal_file.read_text())["format"] == calibration.FORMAT


def test_tune_refuses_bad_input_in_one_line(cal_file):
    for kwargs, msg in [(dict(receiver="pinv", encoder="gaussian"), "no strength options"),
                        (dict(receiver="nope", encoder="gaussian"), "unknown receiver"),
                        (dict(receiver="dps", encoder="gaussian", snrs=["x"]), "--snr"),
                        (dict(receiver="dps", encoder="gaussian", values={"kappa": [1]}), "not a strength option"),
                        (dict(receiver="dps", encoder="gaussian", values={"zeta": [-1]}), "zeta"),
                        (dict(receiver="pigdm", encoder="deepjscc"), "linear")]:
        with pytest.raises(DiffcommError, match=msg) as err:
            tune(kwargs.pop("receiver"), **{"snrs": [10], **kwargs})
        assert "\n" not in str(err.value)
    assert not cal_file.exists()


def test_lookup_takes_the_nearest_steps_then_the_nearest_snr(cal_file):
    save_entries([entry(snr=0.0, steps=10, values={"zeta": 1.0}), entry(snr=20.0, steps=10, values={"zeta": 2.0}),
                  entry(snr=0.0, steps=40, values={"zeta": 4.0}), entry(channel="rayleigh", values={"zeta": 9.0})])
    spec = get_spec("dps")

    def zeta(snr, steps, **kw):
        found = calibrated_options(spec, kw.get("encoder", "gaussian"), (1, 28, 28), 49, kw.get("channel", "awgn"),
                                   "perfect", snr, {"steps": steps})
        return found.get("zeta", {}).get("value")

    assert zeta(5, 10) == 1.0 and zeta(15, 10) == 2.0 and zeta(10, 10) == 1.0  # SNR tie: the lower SNR
    assert zeta(15, 20) == 2.0          # 10 steps is nearer 20 than 40
    assert zeta(15, 25) == 4.0          # 25 is 15 from both: the larger step count
    assert zeta(30, 1000) == 4.0
    assert zeta(10, 10, channel="rayleigh") == 9.0
    assert zeta(10, 10, encoder="downsample") is None and zeta(10, 10, channel="rician") is None
    assert calibrated_options(spec, "gaussian", (1, 28, 28), 49, "awgn", "perfect", 0, {"zeta": 3.0}) == {}
    found = calibrated_options(spec, "gaussian", (1, 28, 28), 49, "awgn", "perfect", 18, {"steps": 10})
    assert found == {"zeta": {"value": 2.0, "snr_db": 20.0, "steps": 10}}


def test_decode_fills_calibrated_values_and_user_values_win(cal_file):
    save_entries([entry(snr=0.0, steps=1, values={"zeta": 0.5}), entry(snr=20.0, steps=1, values={"zeta": 7.0})])
    link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", 15.0)
    rx = link.transmit(torch.rand(1, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    res = decode("dps", link, rx, generator=torch.Generator().manual_seed(0), steps=1)
    assert res.extras["zeta"] == 7.0 and res.extras["options_used"]["zeta"] == 7.0
    assert res.extras["options_source"]["zeta"] == "calibrated" and res.extras["options_source"]["steps"] == "user"
    assert res.extras["calibrated"] == {"zeta": {"value": 7.0, "snr_db": 20.0, "steps": 1}}
    mine = decode("dps", link, rx, generator=torch.Generator().manual_seed(0), steps=1, zeta=1.5)
    assert mine.extras["zeta"] == 1.5 and mine.extras["options_source"]["zeta"] == "user" and not mine.extras[
        "calibrated"]
    off = decode("dps", link, rx, generator=torch.Generator().manual_seed(0), steps=1, calibration=False)
    assert off.extras["zeta"] == get_spec("dps").defaults()["zeta"]
    from diffcomm import zoo

    class OtherPrior(torch.nn.Module):  # a prior that is not the shipped default: no calibrated values
        def __init__(self, prior):
            super().__init__()
            self.prior = prior

        def forward(self, *a, **k):
            return self.prior(*a, **k)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.prior, name)

    shipped = zoo.load("fmnist-prior")
    assert decode("dps", link, rx, prior=shipped, steps=1).extras["zeta"] == 7.0  # the default prior, passed
    assert decode("dps", link, rx, prior=OtherPrior(shipped), steps=1).extras["options_source"]["zeta"] == "default"


def test_grid_points_carry_the_calibration_in_their_key_and_records(cal_file, tmp_path):
    from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid

    cfg = {"receivers": "dps@gaussian,pinv@gaussian", "snr": "15", "n": 1, "steps": 1, "save_images": 0}
    before = {p.receiver: p.key for p in plan(grid_from_mapping(cfg)).points}
    save_entries([entry(snr=20.0, steps=1, values={"zeta": 7.0})])
    points = {p.receiver: p for p in plan(grid_from_mapping(cfg)).points}
    assert points["pinv"].key == before["pinv"]  # receivers without calibration keep their keys
    assert points["dps"].key != before["dps"] and points["dps"].calibrated["zeta"]["value"] == 7.0
    assert points["dps"].channel_key == points["pinv"].channel_key  # same channel draws either way
    save_entries([entry(snr=20.0, steps=1, values={"zeta": 6.0})])
    assert plan(grid_from_mapping(cfg)).points[0].key != points["dps"].key  # a new calibration: a new point
    save_entries([entry(snr=20.0, steps=1, values={"zeta": 7.0})])
    out = tmp_path / "r.jsonl"
    run_grid(plan(grid_from_mapping(cfg)), out, progress=False)
    records = {r["receiver"]: r for r in load_records(out)}
    assert records["dps"]["calibrated"] == {"zeta": {"value": 7.0, "snr_db": 20.0, "steps": 1}}
    assert records["dps"]["options_used"]["zeta"] == 7.0 and records["dps"]["options"] == {"steps": 1}
    assert records["pinv"]["calibrated"] == {}
