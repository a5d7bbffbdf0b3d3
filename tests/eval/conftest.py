"""Shared tiny grid for the evaluation tests: linear receivers, n = 4 Fashion-MNIST test images."""

import pytest

from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid, strip_timing

TINY = {"dataset": "fashion-mnist", "split": "test", "n": 4, "receivers": "pinv,lmmse",
        "encoders": "gaussian,downsample", "channel": "awgn,rayleigh", "snr": "0,20", "cbr": "1/16",
        "save_images": 2, "per_image": True}


def comparable(records):
    """Records keyed by point, without the timing/host fields that legitimately differ."""
    return {r["key"]: strip_timing(r) for r in records}


@pytest.fixture(scope="session")
def tiny_plan():
    return plan(grid_from_mapping(TINY))


@pytest.fixture(scope="session")
def reference(tiny_plan, tmp_path_factory):
    """The tiny grid run serially once: (results path, records keyed by point)."""
    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    run_grid(tiny_plan, out, progress=False)
    return out, comparable(load_records(out))
