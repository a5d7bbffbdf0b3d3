"""Run one gallery example the way sphinx-gallery does and save every figure it draws.

Usage: python tests/docs/run_example.py examples/01_foundations/plot_x.py OUT_DIR

The script runs as sphinx-gallery runs it: as ``__main__`` in its own folder, *without* ``__file__``, with
the Agg backend (``plt.show()`` draws nothing); afterwards each open figure is written to
``OUT_DIR/figure_NN.png``. The test suite sets ``DIFFCOMM_GALLERY_FAST=1``
so that each example runs its quick mode.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(script: str, out_dir: str) -> int:
    script_path, out = Path(script).resolve(), Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    plt.show = lambda *args, **kwargs: None
    os.chdir(script_path.parent)  # sphinx-gallery runs an example in its own folder
    code = compile(script_path.read_text(encoding="utf-8"), str(script_path), "exec")
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # no __file__, as in sphinx-gallery
    numbers = plt.get_fignums()
    for i, num in enumerate(numbers, start=1):
        plt.figure(num).savefig(out / f"figure_{i:02d}.png", dpi=50)
    print(f"{len(numbers)} figure(s) written to {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/docs/run_example.py SCRIPT OUT_DIR")
    sys.exit(main(sys.argv[1], sys.argv[2]))
