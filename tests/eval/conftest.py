"""Fixtures for the evaluation tests: the tiny grid and its serial reference run."""

import pytest

from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid

from .evalcase import TINY, comparable


@pytest.fixture(scope="package", autouse=True)
def no_classifier_metrics():
    """These tests check the classifier-free record layout (psnr/ssim only) whether or not the classifier
    is shipped; the variable reaches spawned workers too. Classifier metrics: test_eval_runner.py."""
    import os

    from diffcomm.eval import runner

    os.environ["DIFFCOMM_EVAL_NO_CLASSIFIER"] = "1"
    runner._classifier.cache_clear()
    yield
    del os.environ["DIFFCOMM_EVAL_NO_CLASSIFIER"]
    runner._classifier.cache_clear()


@pytest.fixture(scope="session")
def tiny_plan():
    return plan(grid_from_mapping(TINY))


@pytest.fixture(scope="session")
def reference(tiny_plan, tmp_path_factory):
    """The tiny grid run serially once: (results path, records keyed by point)."""
    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    run_grid(tiny_plan, out, progress=False)
    return out, comparable(load_records(out))
