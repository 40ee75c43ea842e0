"""Fixtures of the method tests (references live in method_refs.py)."""

import pytest
import torch

from method_refs import make_grads


@pytest.fixture
def grads64():
    return make_grads()


@pytest.fixture
def grads32():
    return make_grads(dtype=torch.float32)
