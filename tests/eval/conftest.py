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
    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    run_grid(tiny_plan, out, progress=False)
    return out, comparable(load_records(out))
