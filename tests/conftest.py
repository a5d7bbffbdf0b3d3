"""Shared test settings: one torch thread per worker (pytest -n 2 on 2 cores), fixed seeds."""

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
