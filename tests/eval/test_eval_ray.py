"""The Ray backend on a local cluster gives the same records as the serial run."""

import pytest

from diffcomm.eval import grid_from_mapping, load_records, plan, run_grid

from .evalcase import TINY, comparable


@pytest.mark.slow
def test_ray_backend_matches_serial(reference, tmp_path):
    pytest.importorskip("ray")
    _, ref = reference
    grid = plan(grid_from_mapping({**TINY, "receivers": "pinv"}))
    out = tmp_path / "ray.jsonl"
    summary = run_grid(grid, out, workers=2, backend="ray", progress=False)
    assert summary.computed == len(grid.points)
    assert comparable(load_records(out)) == {p.key: ref[p.key] for p in grid.points}
