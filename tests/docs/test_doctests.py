"""The examples in every public docstring run and print what they say (``doctest``, one module each)."""

from __future__ import annotations

import doctest
import importlib
import io

import pytest

from diffcomm.utils import public_modules

MODULES = public_modules()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_the_package_has_doctests():
    finder = doctest.DocTestFinder()
    counted = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name), name))
    assert counted > 300, f"only {counted} doctest examples found: did the docstrings lose their examples?"


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed:\n{report.getvalue()}"
