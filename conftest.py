"""Names every docstring example may use without importing them (the API reference shows them the same way)."""

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(torch=torch, nn=nn)
    torch.manual_seed(0)
