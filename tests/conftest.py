"""Shared test fixtures: the real data in ../shared/data, seeds, Triton's CPU interpreter, no TF32,
and the skip of ``gpu`` tests without CUDA."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Triton kernels run on CPU tensors only in the interpreter, which must be on before they are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from mbdlfast.shared_data import missing_message, shared_data_dir  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (the package's one rule: $MBDLFAST_SHARED_DATA, else ../shared/data);
    skips the test when it is absent, with the message every command gives."""
    if not SHARED_DATA.is_dir():
        pytest.skip(missing_message(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _no_tf32():
    """Tests compare float32 results with float32 or float64 references: no TF32 matmuls or cuDNN
    convolutions on a GPU (cuDNN's default allows TF32, ~1e-3 relative). The legacy flags, as
    mbdlfast.inference sets them (torch refuses to read flags set through both APIs); a test of
    TF32 turns it on itself."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_gan(tmp_path_factory, shared_data) -> Path:
    """A toy DCGAN checkpoint (16x16, two training steps on Set14 crops), written by ``mbdlfast gan train``."""
    from mbdlfast.cli import main

    out = tmp_path_factory.mktemp("gan")
    assert main(["gan", "train", "--images", str(shared_data / "images" / "set14"), "--size", "16", "--features", "4",
                 "--latent-dim", "8", "--steps", "2", "--batch-size", "4", "--crops", "16", "--out", str(out),
                 "--no-progress"]) == 0
    assert (out / "samples.png").stat().st_size > 0
    return out / "gan.pt"
