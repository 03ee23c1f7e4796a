"""No host synchronisation on the reconstruction hot path: the guard itself, then DEQ, MoDL, VarNet and
E2E-VarNet forwards after the first call (the physics built once, at the edge)."""
from __future__ import annotations

import math

import pytest
import torch

from mbdlfast.training.config import DataConfig
from mbdlfast.training.data import TrainingSlices, collate_batch
from mbdlfast.training.registry import build_model
from mbdlfast.sync_guard import HostSyncError, allow_host_sync, forbid_host_sync

SMALL = {
    "deq": {"prior_kwargs": {"n_resblocks": 2, "n_feats": 8}, "solver_kwargs": {"tol": 1e-4, "max_iter": 30}},
    "modl": {"num_iter": 2, "cg_iter": 4, "prior_kwargs": {"channels": 8}},
    "varnet": {"num_cascades": 2, "chans": 4, "pools": 2},
    "e2e_varnet": {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 4, "sens_pools": 2},
}


@pytest.mark.parametrize("sync", [
    lambda t: t.sum().item(),
    lambda t: float(t.sum()),
    lambda t: bool((t > 0).any()),
    lambda t: torch.nonzero(t),
    lambda t: t[t > 0],
    lambda t: t.to("meta"),
])
def test_the_guard_flags_every_kind_of_host_sync(sync):
    t = torch.randn(5)
    with pytest.raises(HostSyncError, match="host synchronisation on the hot path"):
        with forbid_host_sync():
            sync(t)
    with forbid_host_sync(raise_on_sync=False) as recorder:
        sync(t)
    assert len(recorder.syncs) >= 1


def test_declared_reads_are_counted_apart_and_device_side_work_passes():
    t = torch.randn(5)
    with forbid_host_sync() as recorder:
        torch.where(t > 0, t, -t).exp().sum()
        with allow_host_sync("a convergence check"):
            bool((t > 0).any())
    assert recorder.allowed == {"a convergence check": 1} and recorder.syncs == []


@pytest.fixture(scope="module")
def batch():
    data = TrainingSlices(DataConfig(image_size=24, num_coils=3, num_slices=2), seed=0)
    return collate_batch([data[0], data[1]])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_reconstruction_forward_does_not_wait_on_the_device(name, batch):
    torch.manual_seed(0)
    model = build_model(name, SMALL[name])[0].eval()
    physics = batch.physics()  # validated once, at the edge
    with torch.no_grad():
        model(batch.kspace, physics)  # the first call may build caches
        with forbid_host_sync() as recorder:
            model(batch.kspace, physics)
    if name == "deq":  # only the solver's declared convergence checks, every check_every steps
        solver = model.solver_kwargs
        checks = recorder.allowed["fixed-point solver: convergence check every check_every steps"]
        assert 1 <= checks <= math.ceil(solver["max_iter"] / solver.get("check_every", 5))
    else:
        assert recorder.allowed == {}


@pytest.mark.gpu
def test_cuda_forward_has_no_synchronising_call(batch):
    device = torch.device("cuda")
    model = build_model("varnet", SMALL["varnet"])[0].eval().to(device)
    batch = batch.to(device)
    physics = batch.physics()
    with torch.no_grad():
        model(batch.kspace, physics)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            model(batch.kspace, physics)
        finally:
            torch.cuda.set_sync_debug_mode("default")
