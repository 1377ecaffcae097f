"""Fixtures shared by every tier."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: faster on the shared 2-core runner, and identical in both runs of a comparison."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
