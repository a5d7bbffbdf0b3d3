"""Fixtures for the evaluation tests: the tiny grid and its serial reference run."""

import pytest

from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid

from .evalcase import TINY, comparable


@pytest.fixture(scope="session")
def tiny_plan():
    return plan(grid_from_mapping(TINY))


@pytest.fixture(scope="session")
def reference(tiny_plan, tmp_path_factory):
    """The tiny grid run serially once: (results path, records keyed by point)."""
    from unittest import mock

    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    # The reference grid is the classifier-free case (metrics psnr/ssim only), whether or not the
    # classifier is shipped; runs with the classifier are tested in test_eval_runner.py.
    with mock.patch("diffcomm.eval.runner._classifier", lambda: None):
        run_grid(tiny_plan, out, progress=False)
    return out, comparable(load_records(out))
