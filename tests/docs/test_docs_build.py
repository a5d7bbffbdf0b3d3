"""The documentation site builds offline with warnings as errors, with an API page per module and the gallery.

The gallery's scripts are rendered, not run (``plot_gallery=0``): tests/docs/test_gallery.py runs each of
them. ``bash scripts/docs.sh`` builds the same site with the gallery executed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from diffcomm.utils import public_modules

ROOT = Path(__file__).resolve().parents[2]


def test_site_builds_warning_free(tmp_path: Path):
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
           "-d", str(tmp_path / "doctrees"), "-D", "plot_gallery=0", str(ROOT / "docs"), str(out)]
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"sphinx-build failed (warnings are errors):\n{proc.stderr[-6000:]}"
    for page in ["index", "installation", "conventions", "architecture", "interfaces", "api/index",
                 "auto_examples/index"]:
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"
    missing = [m for m in public_modules() if not (out / "api" / f"{m}.html").is_file()]
    assert not missing, f"no API page for {missing}"
    examples = sorted((ROOT / "examples").glob("*/plot_*.py"))
    gallery = [out / "auto_examples" / p.parent.name / f"{p.stem}.html" for p in examples]
    assert examples and all(p.is_file() for p in gallery), "an example has no gallery page"
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not bundled: the site is not offline"
    remote = re.compile(r"<(?:script|link)[^>]*(?:src|href)=\"(?:https?:)?//")
    online = [p.relative_to(out) for p in out.rglob("*.html") if remote.search(p.read_text(encoding="utf-8"))]
    assert not online, f"pages load scripts or styles from the network: {online[:5]}"
