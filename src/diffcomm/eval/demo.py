"""The demo: a small preset grid on shipped data and weights, its table, curves and report.

The preset is :data:`PRESET` (``presets/demo.toml``), run by the same grid runner as
``diffcomm eval --config``. The digital baseline is dropped with a note when
:mod:`diffcomm.transmit.digital` cannot run here (Sionna or every codec missing). Missing shipped
weights stop the demo before any work with a one-line error naming the model.

Example:
    Skipped as a doctest: it runs the whole preset grid, which takes minutes on a CPU.

    >>> from diffcomm.eval.demo import run_demo
    >>> info = run_demo("demo-out")                  # doctest: +SKIP
    >>> info["report"]                               # doctest: +SKIP
    PosixPath('demo-out/report.html')
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffcomm.eval.grid import DIGITAL, Plan, grid_from_mapping, load_config, plan

PRESET = Path(__file__).resolve().parent / "presets" / "demo.toml"


def digital_unavailable() -> str | None:
    """Why the digital baseline cannot run here, or ``None`` when it can."""
    try:
        from diffcomm.transmit.digital import available_codecs
    except ImportError as exc:
        return f"the digital baseline needs {exc.name or 'its dependencies'} (pip install 'diffcomm[digital]')"
    if not available_codecs():
        return "the digital baseline found no working image codec"
    return None


def demo_plan(preset: str | os.PathLike | None = None, n: int | None = None, snr: str | None = None,
              steps: int | None = None) -> tuple[Plan, list[str]]:
    """The validated demo grid (preset plus overrides) and notes on what was dropped."""
    config: dict[str, Any] = load_config(preset or PRESET)
    notes: list[str] = []
    receivers = config.get("receivers", [])
    if isinstance(receivers, str):
        receivers = [r.strip() for r in receivers.split(",")]
    if any(r.split("@")[0] == DIGITAL for r in receivers):
        reason = digital_unavailable()
        if reason:
            receivers = [r for r in receivers if r.split("@")[0] != DIGITAL]
            config.setdefault("options", {}).pop(DIGITAL, None)
            config.get("n_per_receiver", {}).pop(DIGITAL, None)
            notes.append(f"skipping the digital baseline: {reason}")
    config["receivers"] = receivers
    if n is not None:
        config["n"] = n
    if snr is not None:
        config["snr"] = snr
    if steps is not None:
        config["steps"] = steps
        for opts in config.get("options", {}).values():
            opts.pop("steps", None)
    p = plan(grid_from_mapping(config))
    return p, notes + p.notes


def run_demo(out: str | os.PathLike, preset: str | os.PathLike | None = None, n: int | None = None,
             snr: str | None = None, steps: int | None = None, workers: int = 1, progress: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``out``: ``results.jsonl`` (resumable), ``plots/``, ``report.html``.

    Prints the notes, the results table, where the outputs are and the total time.
    """
    from diffcomm.eval.plots import plot_results
    from diffcomm.eval.report import write_report
    from diffcomm.eval.runner import check_backend, run_grid
    from diffcomm.eval.summary import results_table, transmitted
    from diffcomm.utils import format_table

    t0 = time.perf_counter()
    check_backend("local", workers, None)
    grid, notes = demo_plan(preset, n, snr, steps)
    out = Path(out)
    for note in notes:
        echo(f"note: {note}")
    sizes = ", ".join(f"{r}: {n}" for r, n in grid.spec.n_per_receiver.items())
    echo(f"demo: {len(grid.points)} points ({grid.spec.n} {grid.spec.dataset} {grid.spec.split} images each"
         + (f"; {sizes})" if sizes else ")"))
    results = out / "results.jsonl"
    summary = run_grid(grid, results, workers=workers, progress=progress)
    if summary.reused:
        echo(f"note: reused {summary.reused} finished points from {results}")
    echo(format_table(*results_table(summary.records)))
    for note in dict.fromkeys(n for r in summary.records for n in r.get("notes") or []):
        echo(f"note: {note}")
    fallbacks = [f"{r['channel']} {r['snr_db']:g} dB" for r in summary.records
                 if transmitted(r).startswith("nothing")]
    if fallbacks:
        echo("note: 'sent' says what reached the receiver; 'nothing: fallback' means the digital baseline could "
             "not deliver (no configuration fitted or decoded) and every image is the mid-grey fallback: "
             + ", ".join(fallbacks))
    plots = plot_results(summary.records, out / "plots")
    report = write_report(results, out)
    seconds = time.perf_counter() - t0
    echo(f"results: {results}\nplots:   {out / 'plots'} ({len(plots)} files)\nreport:  {report}")
    echo(f"total time: {seconds:.1f} s")
    return {"results": results, "report": report, "plots": plots, "records": summary.records, "seconds": seconds}
