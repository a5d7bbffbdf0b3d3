"""Sphinx configuration of the diffcomm documentation site (built by ``bash scripts/docs.sh``).

The site is built offline: the theme (furo), MathJax (sphinx-mathjax-offline) and every example's
data and weights are local. The API reference is generated at build time from the docstrings, one
page per module (:func:`write_api_pages`), and the example gallery from ``examples/`` by
sphinx-gallery. ``-D plot_gallery=0`` renders the gallery without running it (the test suite runs
every example itself, in its quick mode).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))

import diffcomm  # noqa: E402
from diffcomm.utils import public_modules  # noqa: E402

project = "diffcomm"
author = "the diffcomm developers"
copyright = "2026, the diffcomm developers"
release = diffcomm.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "**/GALLERY_HEADER.rst", "auto_examples/**/*.ipynb",
                    "auto_examples/**/*.py", "auto_examples/**/*.zip", "auto_examples/**/*.json",
                    "sg_execution_times.rst", "auto_examples/**sg_execution_times.rst"]
html_theme = "furo"
html_title = f"diffcomm {release}"

# Markdown pages (the architecture and interface pages are shared with the repository's docs/).
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# Docstrings: Google-style "Example:" sections, type hints in the signature.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",  # sections too are in folder-name order (the default)
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "min_reported_time": 1,
    "write_computation_times": False,  # those pages load DataTables from a CDN: the site must work offline
}

# One API page per public module -------------------------------------------------------------------

def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_api_pages(out_dir: Path = DOCS / "api") -> list[str]:
    """Write ``api/<module>.rst`` for every public module and ``api/index.rst`` listing them."""
    out_dir.mkdir(exist_ok=True)
    modules = public_modules()
    for name in modules:
        title = f"``{name}``"
        module = importlib.import_module(name)
        text = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n   :members:\n"
        if hasattr(module, "__path__"):  # a package: skip re-exports that shadow a submodule's name
            shadowed = sorted(info.name for info in pkgutil.iter_modules(module.__path__)
                              if getattr(module, info.name, None) is not None
                              and not hasattr(getattr(module, info.name), "__path__")
                              and type(getattr(module, info.name)).__name__ != "module")
            if shadowed:
                text += f"   :exclude-members: {', '.join(shadowed)}\n"
        _write_if_changed(out_dir / f"{name}.rst", text)
    for stale in out_dir.glob("diffcomm*.rst"):
        if stale.stem not in modules:
            stale.unlink()
    packages = {name for name in modules if name != "diffcomm" and hasattr(importlib.import_module(name), "__path__")}
    groups: dict[str, list[str]] = {"diffcomm": []}
    for name in modules:
        top = ".".join(name.split(".")[:2])
        groups.setdefault(top if top in packages else "diffcomm", []).append(name)
    lines = ["API reference", "=============", "",
             "Generated from the docstrings, one page per module. Each module's docstring cites the",
             "paper and equation it implements; the conventions are on :doc:`../conventions`.", ""]
    for group, names in groups.items():
        title = "The package and its top-level modules" if group == "diffcomm" else f"``{group}``"
        doc = (importlib.import_module(group).__doc__ or "").strip()
        summary = " ".join(doc.split("\n\n")[0].split())  # the docstring's first paragraph
        lines += [title, "-" * len(title), ""]
        if group != "diffcomm" and summary:
            lines += [summary, ""]
        lines += [".. toctree::", "   :maxdepth: 1", ""] + [f"   {name}" for name in names] + [""]
    _write_if_changed(out_dir / "index.rst", "\n".join(lines))
    return modules


os.environ.setdefault("MPLBACKEND", "Agg")
write_api_pages()
