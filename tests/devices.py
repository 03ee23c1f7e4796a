"""The devices the tests run on: CPU always, CUDA where there is one (marked ``gpu``: skipped with a
reason elsewhere), and the one device Triton's kernels are tested on.

Triton runs on CUDA tensors, and on CPU tensors only in its interpreter (``TRITON_INTERPRET=1``,
which tests/conftest.py turns on only without CUDA): so Triton's cases use CUDA tensors where CUDA
is present and CPU tensors in the interpreter otherwise, never CPU tensors on a GPU machine.
"""
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
TRITON_DEVICE = "cuda" if HAS_CUDA else "cpu"
