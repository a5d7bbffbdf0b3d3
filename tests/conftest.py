"""Shared test settings: one torch thread per worker (pytest -n 2 on 2 cores), fixed seeds."""

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
# Evaluation records in tests use the classifier-free layout (psnr/ssim only) in every process, spawned
# workers and subprocesses included; tests of the classifier metrics patch diffcomm.eval.runner._classifier.
os.environ["DIFFCOMM_EVAL_NO_CLASSIFIER"] = "1"


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
