"""Shared fixtures. Tests run in float64 on the CPU unless they say otherwise."""

import pytest
import torch

import volumelab as vl


@pytest.fixture(scope="session")
def sensing_problem() -> vl.Problem:
    """The paper's problem size: 5x5, rank 1, 15 sensing measurements, unit norm."""
    return vl.make_sensing(5, 5, 1, 15, seed=0)


@pytest.fixture(scope="session")
def rectangular_problem() -> vl.Problem:
    """A non-square problem, so that formulas in rows and in cols cannot be confused."""
    return vl.make_sensing(4, 6, 2, 10, seed=1)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
