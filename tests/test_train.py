"""Training: config, data pipeline, self-describing atomic checkpoints, exact resume, CLI and DDP."""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbdlfast.cli import main as cli_main
from mbdlfast.data.synthetic import write_synthetic_fastmri_folder
from mbdlfast.training import checkpoint as checkpoint_module
from mbdlfast.training import (
    MODEL_REGISTRY, ModelConfig, Trainer, TrainingSlices, build_model, collate_batch, load_checkpoint,
    load_config, save_checkpoint, split_train_val
)
from mbdlfast.training.config import DataConfig, OptimConfig
from mbdlfast.training.trainer import scheduled_lr
from mbdlfast.training.distributed import DistributedContext
from mbdlfast.physics.sense import SenseOperator

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_DEQ = {"prior_kwargs": {"n_resblocks": 1, "n_feats": 8}, "solver_kwargs": {"max_iter": 5}}


def tiny_config(out, **overrides):
    """A DEQ run small enough for a few CPU seconds: 16x16, 2 coils, 7 slices (6 train, 1 val)."""
    settings = {"model.kwargs": TINY_DEQ, "data.image_size": 16, "data.num_coils": 2, "data.num_slices": 7,
                "data.val_fraction": 0.15, "train.batch_size": 2, "train.steps": 2, "train.lr": 1e-3,
                "train.progress": False, "out": str(out)}
    settings.update(overrides)
    return load_config(overrides=settings)


def run(config) -> Trainer:
    trainer = Trainer(config, DistributedContext())
    trainer.fit()
    return trainer


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------------- config


def test_config_yaml_then_flags_then_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model:\n  name: modl\n  kwargs: {num_iter: 3}\n"
                    "data: {acceleration: 8, snr_db: null}\ntrain: {lr: 1e-3, steps: 7}\nseed: 5\n")
    config = load_config(path, ["train.lr=3e-4", "model.kwargs.prior_kwargs.channels=16", "data.image_size=32"])
    assert config.model.name == "modl"
    assert config.model.kwargs == {"num_iter": 3, "prior_kwargs": {"channels": 16}}
    assert config.data.acceleration == 8 and config.data.snr_db is None and config.data.image_size == 32
    assert config.train.lr == 3e-4 and isinstance(config.train.lr, float) and config.train.steps == 7
    assert config.seed == 5
    assert load_config(overrides={"train.amp": "false"}).train.amp is False


@pytest.mark.parametrize("overrides, message", [
    (["train.lrr=1"], "unknown setting 'train.lrr'"),
    (["train.steps=1.5"], "train.steps: expected an integer"),
    (["train.steps=0"], "train.steps: expected >= 1"),
    (["data.center_fraction=1.2"], "data.center_fraction"),
    (["model.name=unet3d"], "model.name: expected one of"),
    (["data.source=/no/such/folder"], "does not exist"),
    (["train.amp=maybe"], "train.amp: expected true or false"),
    (["train=1"], "is a section"),
    (["lr"], "expected key=value"),
    (["train.schedule=linear"], "train.schedule: expected one of"),
    (["train.steps=10", "train.warmup_steps=10"], "train.warmup_steps: expected 0 <= warmup_steps < train.steps=10"),
])
def test_config_errors_name_the_setting(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides=overrides)


def test_learning_rate_schedules_are_pure_functions_of_the_step():
    constant = OptimConfig(lr=1e-3, steps=100)
    assert [scheduled_lr(constant, s) for s in (0, 50, 99)] == [1e-3] * 3
    cosine = OptimConfig(lr=1e-3, steps=100, schedule="cosine", warmup_steps=9)
    assert [scheduled_lr(cosine, s) for s in (0, 4, 8)] == pytest.approx([1e-4, 5e-4, 9e-4])
    assert scheduled_lr(cosine, 9) == pytest.approx(1e-3)
    assert scheduled_lr(cosine, 9 + 91 // 2) == pytest.approx(0.5e-3, rel=0.05)
    assert 0 < scheduled_lr(cosine, 99) < 1e-6


def test_config_bad_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: {lr: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping of settings"):
        load_config(tmp_path / "list.yaml")


def test_registry_resolves_every_constructor_argument():
    model, kwargs = build_model("deq", {"prior_kwargs": {"n_feats": 8}})
    assert kwargs["prior_kwargs"] == {"n_resblocks": 13, "n_feats": 8, "in_channels": 2, "res_scale": 1.0}
    assert kwargs["alpha"] == 0.5 and kwargs["backward"] == "jfb"
    # the paper's sizes: 999,426 EDSR weights (+ alpha, gamma); VarNet 8 cascades with given maps
    assert sum(p.numel() for p in build_model("deq")[0].parameters()) == 999_426 + 2
    with torch.device("meta"):
        assert sum(p.numel() for p in build_model("varnet")[0].parameters()) == 19_634_712
    with pytest.raises(ValueError, match="unknown argument"):
        build_model("edsr", {"depth": 3})
    assert {spec.loss for name, spec in MODEL_REGISTRY.items() if "varnet" in name} == {"ssim"}
    assert MODEL_REGISTRY["deq"].loss == MODEL_REGISTRY["modl"].loss == "smooth_l1"


# ------------------------------------------------------------------------------------------------ data


def test_synthetic_batches_are_consistent_masked_and_split_by_seed():
    data = DataConfig(image_size=16, num_coils=3, num_slices=8, snr_db=None, val_fraction=0.25)
    dataset = TrainingSlices(data, seed=3)
    batch = collate_batch([dataset[0], dataset[5]])
    assert batch.kspace.shape == batch.maps.shape == (2, 3, 16, 16) and batch.target.shape == (2, 16, 16)
    assert batch.mask.shape == (2, 16) and batch.mask.dtype == torch.bool
    assert batch.kspace.dtype == batch.maps.dtype == batch.target.dtype == torch.complex64
    # noise-free: the measured lines are exactly A(target), the others zero; normalised to max|A^H y| = 1
    op = SenseOperator(batch.maps.to(torch.complex128), batch.mask, mask_is_2d=False)
    expected = op.A(batch.target.to(torch.complex128))
    assert torch.allclose(batch.kspace.to(torch.complex128), expected, atol=1e-5 * expected.abs().max().item())
    assert torch.all(batch.kspace[..., ~batch.mask[0]][0] == 0)
    assert torch.allclose(op.A_adjoint(batch.kspace.to(torch.complex128)).abs().amax(dim=(-2, -1)),
                          torch.ones(2, dtype=torch.float64), atol=1e-5)

    train_a, val_a = split_train_val(dataset, 0.25, seed=1)
    train_b, val_b = split_train_val(dataset, 0.25, seed=1)
    _, val_c = split_train_val(dataset, 0.25, seed=2)
    assert len(val_a) == 2 and len(train_a) == 6 and not set(train_a.indices) & set(val_a.indices)
    assert val_a.indices == val_b.indices and val_a.indices != val_c.indices


def test_fastmri_folder_gets_espirit_maps_once_per_slice_and_split_by_volume(tmp_path):
    write_synthetic_fastmri_folder(tmp_path, 3, 2, 24, 20, 4, seed=1)
    data = DataConfig(source=str(tmp_path), image_size=18, val_fraction=0.34, calib_width=12)
    dataset = TrainingSlices(data, seed=0)
    assert len(dataset) == 6 and dataset.groups == [0, 0, 1, 1, 2, 2]
    first = dataset[1]
    assert first["kspace"].shape == first["maps"].shape == (4, 18, 18)
    coil_norm = first["maps"].abs().square().sum(dim=0).sqrt()
    assert torch.allclose(coil_norm[coil_norm > 0], torch.ones(()), atol=1e-4)  # ESPIRiT: unit norm where kept
    again = dataset[1]
    assert dataset.espirit_calls == 1 and torch.equal(first["maps"], again["maps"])
    train, val = split_train_val(dataset, 0.34, seed=0)
    assert len(val) == 2 and {dataset.groups[i] for i in val.indices}.isdisjoint({dataset.groups[i] for i in train.indices})


# ----------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_rebuilds_the_trained_model_from_the_file_alone(tmp_path):
    trainer = run(tiny_config(tmp_path))
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt", expected_model="deq")
    assert checkpoint.step == 2 and len(checkpoint.history) == 2
    assert all(math.isfinite(h["loss"]) for h in checkpoint.history)
    assert "val_psnr" in checkpoint.history[-1] and checkpoint.train_config["train"]["steps"] == 2
    assert checkpoint.model_kwargs["prior_kwargs"]["n_feats"] == 8
    assert_same_state(trainer.model.state_dict(), checkpoint.model.state_dict())
    batch = collate_batch([trainer.val_set[0]])
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(trainer.model(batch.kspace, batch.physics()),
                           checkpoint.model(batch.kspace, batch.physics()))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    # 6 training slices in batches of 2: 3 steps per epoch; stop mid-epoch at step 2, resume to step 4
    straight = run(tiny_config(tmp_path / "straight", **{"train.steps": 4}))
    run(tiny_config(tmp_path / "first", **{"train.steps": 2}))
    resumed = run(tiny_config(tmp_path / "resumed", **{"train.steps": 4, "resume": str(tmp_path / "first/checkpoint.pt")}))
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    a, b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k]["exp_avg_sq"], b[k]["exp_avg_sq"]) for k in a)


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, _ = build_model("edsr", {"n_resblocks": 1, "n_feats": 4})
    config = ModelConfig("edsr", {"n_resblocks": 1, "n_feats": 4})
    path = save_checkpoint(tmp_path / "model.pt", model, config, step=1)
    before = path.read_bytes()

    def crash_midway(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(checkpoint_module.torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, config, step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert load_checkpoint(path).step == 1


def test_bad_checkpoints_give_one_line_value_errors(tmp_path):
    model, _ = build_model("dncnn", {"depth": 2, "channels": 4})
    path = save_checkpoint(tmp_path / "dncnn.pt", model, ModelConfig("dncnn", {"depth": 2, "channels": 4}))
    (tmp_path / "truncated.pt").write_bytes(path.read_bytes()[:200])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    cases = [(path, "deq", "holds a 'dncnn' model, expected 'deq'"),
             (tmp_path / "truncated.pt", None, "corrupt or truncated"),
             (tmp_path / "text.pt", None, "corrupt or truncated"),
             (tmp_path / "foreign.pt", None, "not an mbdlfast checkpoint"),
             (tmp_path / "missing.pt", None, "does not exist")]
    for file, expected, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            load_checkpoint(file, expected_model=expected)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="do not match"):
        save_checkpoint(tmp_path / "x.pt", model, ModelConfig("edsr"))


@pytest.mark.gpu
def test_amp_training_on_cuda_saves_the_scaler(tmp_path):
    config = tiny_config(tmp_path, **{"device": "cuda", "train.amp": True, "train.steps": 3})
    trainer = run(config)
    assert trainer.amp and trainer.device.type == "cuda"
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt", expected_model="deq")
    assert checkpoint.scaler is not None and all(math.isfinite(h["loss"]) for h in checkpoint.history)
    assert math.isfinite(checkpoint.history[-1]["val_psnr"])


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/no/such/folder"], "data.source"),
    (["train", "--steps", "-3"], "train.steps"),
    (["train", "--batch-size", "two"], "train.batch_size: expected an integer"),
    (["train", "--out", "/proc/no-such-dir/run"], "out: cannot write"),
    (["train", "--model", "deq", "--model-kwargs", "{nope: 1}", "--out", "{tmp}"], "unknown argument"),
    (["train", "train.lr"], "expected key=value"),
])
def test_cli_bad_input_exits_nonzero_with_one_line(argv, message, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mbdlfast train: error:") and message in err


def test_cli_unknown_flag_and_missing_command(capsys):
    for argv in (["train", "--bogus"], []):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_cli_train_writes_a_loadable_checkpoint(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: edsr, kwargs: {n_resblocks: 1, n_feats: 4}}\ndata: {num_slices: 5}\n")
    assert cli_main(["train", "--config", str(config), "--image-size", "16", "--coils", "2", "--steps", "2",
                     "--no-progress", "--out", str(tmp_path / "run"), "train.loss=ssim"]) == 0
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt", expected_model="edsr")
    assert checkpoint.step == 2 and checkpoint.train_config["train"]["loss"] == "ssim"


# ------------------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m mbdlfast ...`` (torchrun is torch.distributed.run) on CPU/gloo.

    The job runs in its own process group; past ``timeout`` every process gets SIGABRT, on which
    faulthandler prints each rank's Python stack, and the failure shows where they hung."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "mbdlfast", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s; its output after SIGABRT (each rank's stack):\n"
                    f"{stderr[-8000:]}")
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _fingerprint(model) -> list[float]:
    params = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    return [params.sum().item(), params.square().sum().item()]


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """Two gloo ranks with batch 1 see the two samples a single process sees with batch 2 (rank r
    takes every other index of the same seeded permutation), so with averaged gradients both runs
    take the same steps; the ranks' replicas must be identical."""
    model_kwargs = "{prior_kwargs: {n_resblocks: 1, n_feats: 8}, solver_kwargs: {max_iter: 5}}"
    torchrun(["train", "--model", "deq", "--data", "synthetic", "--steps", "3", "--batch-size", "1",
              "--image-size", "16", "--coils", "2", "--slices", "9", "--lr", "1e-3", "--model-kwargs", model_kwargs,
              "--no-progress", "data.val_fraction=0.15", "--out", str(tmp_path / "ddp")], timeout=240)
    checkpoint = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt", expected_model="deq")
    assert checkpoint.step == 3 and checkpoint.extra["world_size"] == 2
    assert [h["step"] for h in checkpoint.history] == [1, 2, 3]
    rank0, rank1 = checkpoint.extra["replica_fingerprints"]
    assert rank0 == rank1  # exactly: the replicas are in sync
    assert _fingerprint(checkpoint.model) == pytest.approx(rank0, rel=1e-12)  # (thread counts change sum order)

    single = run(tiny_config(tmp_path / "single", **{"train.steps": 3, "data.num_slices": 9}))
    assert [h["loss"] for h in checkpoint.history] == pytest.approx([h["loss"] for h in single.history], rel=1e-4)
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(checkpoint.model.state_dict()[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_ddp_command_of_the_issue(tmp_path):
    """The documented command, with the full-size default DEQ (EDSR prior, 4 coils, 64x64)."""
    torchrun(["train", "--model", "deq", "--data", "synthetic", "--steps", "4", "--batch-size", "1",
              "--image-size", "64", "--out", str(tmp_path)], timeout=600)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt", expected_model="deq")
    assert checkpoint.step == 4 and len(checkpoint.history) == 4
    rank0, rank1 = checkpoint.extra["replica_fingerprints"]
    assert rank0 == rank1  # exactly: the replicas are in sync
    assert _fingerprint(checkpoint.model) == pytest.approx(rank0, rel=1e-12)  # (thread counts change sum order)
