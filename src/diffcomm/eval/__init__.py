"""Evaluation: grids of (receiver, encoder, channel, CSI, SNR, CBR, seed) points, a resumable
results store, a local/multiprocess/Ray runner, curves, an HTML report, and the demo.

Example:
    >>> import os, shutil, tempfile
    >>> from diffcomm.eval import grid_from_mapping, plan, run_grid, load_records, plot_results, write_report
    >>> grid = plan(grid_from_mapping({"receivers": "pinv", "encoders": "gaussian,downsample",
    ...                                "snr": "0,10", "n": 4}))
    >>> out = tempfile.mkdtemp()
    >>> results = os.path.join(out, "results.jsonl")
    >>> run_grid(grid, results, progress=False).computed       # 2 encoders × 2 SNRs
    4
    >>> len(load_records(results))
    4
    >>> write_report(results, os.path.join(out, "report")).name
    'report.html'
    >>> shutil.rmtree(out)
"""

from diffcomm.eval.grid import (
    GridSpec,
    Plan,
    Point,
    cbr_label,
    derive_seed,
    grid_from_mapping,
    load_config,
    parse_cbrs,
    parse_snrs,
    plan,
)
from diffcomm.eval.plots import plot_results
from diffcomm.eval.report import render_report, write_report
from diffcomm.eval.runner import RunSummary, run_grid, run_point
from diffcomm.eval.store import TIMING_FIELDS, ResultsWriter, load_records, sidecar_dir, strip_timing
from diffcomm.eval.summary import curves, metric_names, metric_value, results_table

__all__ = [
    "TIMING_FIELDS", "GridSpec", "Plan", "Point", "ResultsWriter", "RunSummary", "cbr_label", "curves",
    "derive_seed", "grid_from_mapping", "load_config", "load_records", "metric_names", "metric_value",
    "parse_cbrs", "parse_snrs", "plan", "plot_results", "render_report", "results_table", "run_grid",
    "run_point", "sidecar_dir", "strip_timing", "write_report",
]
