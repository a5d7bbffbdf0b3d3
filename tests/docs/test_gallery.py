"""Every gallery example runs (quick mode) and draws a figure that is not blank."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*/plot_*.py"))
RUNNER = Path(__file__).with_name("run_example.py")


def test_every_section_has_a_header_and_examples():
    sections = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert sections, "no gallery sections under examples/"
    for section in sections:
        assert (section / "GALLERY_HEADER.rst").is_file(), f"{section.name} has no GALLERY_HEADER.rst"
        assert list(section.glob("plot_*.py")), f"{section.name} has no plot_*.py example"


@pytest.mark.parametrize("script", EXAMPLES, ids=[f"{p.parent.name}/{p.stem}" for p in EXAMPLES])
def test_example_runs_and_draws_its_figure(script: Path, tmp_path: Path):
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    assert doc and doc.splitlines()[1].startswith("="), f"{script.name} needs a docstring with an RST title"
    env = dict(os.environ, DIFFCOMM_GALLERY_FAST="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(RUNNER), str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    figures = sorted(tmp_path.glob("figure_*.png"))
    assert figures, f"{script.name} drew no figure"
    for fig in figures:
        pixels = np.asarray(Image.open(fig).convert("L"), dtype=np.float32)
        assert pixels.std() > 1.0, f"{script.name}: {fig.name} is blank"
