"""The command line with bad or awkward input: outputs checked before the work, no empty folders from
failed runs, resuming with the checkpoint's settings, every input format for training, foreign files."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from mbdlfast.cli import main as cli_main
from mbdlfast.data.cfl import write_cfl
from mbdlfast.data.synthetic import SyntheticMulticoil
from mbdlfast.training import ModelConfig, build_model, load_checkpoint, save_checkpoint

TINY_VARNET = {"num_cascades": 1, "chans": 4, "pools": 1, "output": "image"}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ": error: " in err, err
    return err


@pytest.fixture()
def refuse_work(monkeypatch):
    """Make the work itself fail the test: the command must stop before it."""
    def forbidden(*args, **kwargs):
        pytest.fail("the work ran although its output cannot be written")

    import mbdlfast.dip as dip
    import mbdlfast.prune.structured as structured

    monkeypatch.setattr(structured, "prune_structured", forbidden)
    monkeypatch.setattr(dip, "make_problem", forbidden)


@pytest.mark.parametrize("command", [
    ["prune", "--model", "deq", "--ratio", "0.5", "--out", "{blocked}/pruned.pt"],
    ["lip", "--image", "F16", "--rounds", "1", "--iters", "2", "--out", "{blocked}/lip"],
    ["train", "--steps", "1", "--out", "{blocked}/run"],
    ["demo", "--quick", "--out", "{blocked}/demo"],
    ["recon", "--model", "deq", "--data", "{data}", "--out", "{blocked}/recon"],
    ["pun", "--steps", "1", "--out", "{blocked}/pun"],
])
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys, refuse_work, command):
    blocked = tmp_path / "a_file"
    blocked.write_text("a file where a folder is needed")
    np.save(tmp_path / "volume.npy", SyntheticMulticoil(32, 32, 2, seed=0).sample(0)["kspace"].numpy())
    argv = [part.format(blocked=blocked, data=tmp_path / "volume.npy") for part in command]
    assert cli_main(argv) == 2
    assert "out: " in one_line_error(capsys)


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path, capsys):
    out = tmp_path / "new" / "lip"
    assert cli_main(["lip", "--image", str(tmp_path / "missing.png"), "--rounds", "1", "--iters", "2",
                     "--out", str(out)]) == 2
    one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_prune_writes_the_shipped_weights_by_name(tmp_path, capsys):
    assert cli_main(["prune", "--model", "deq", "--ratio", "0.5", "--out", str(tmp_path / "out" / "p.pt")]) == 0
    pruned = load_checkpoint(tmp_path / "out" / "p.pt")
    assert pruned.model_name == "deq" and pruned.extra["pruning"]["source"].endswith("deq_small.pt")


class _Pickled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3)


def _foreign_files(tmp_path):
    state_dict = tmp_path / "fastmri_varnet_state_dict.pt"
    torch.save({"cascades.0.dc_weight": torch.ones(1)}, state_dict)
    pickled = tmp_path / "pickled_module.pt"
    torch.save(_Pickled(), pickled)  # a whole pickled module: weights_only loading refuses it
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n" * 5)
    return [state_dict, pickled, text]


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["state dict", "pickled module", "text"])
@pytest.mark.parametrize("command", [
    ["recon", "--model", "{pt}", "--data", "{data}", "--out", "{out}"],
    ["prune", "--model", "{pt}", "--ratio", "0.5", "--out", "{out}/p.pt"],
    ["finetune", "--student", "{pt}", "--steps", "1", "--out", "{out}"],
    ["train", "--resume", "{pt}", "--out", "{out}"],
])
def test_a_foreign_pt_file_gives_a_one_line_error(tmp_path, capsys, kind, command):
    foreign = _foreign_files(tmp_path)[kind]
    np.save(tmp_path / "volume.npy", SyntheticMulticoil(32, 32, 2, seed=0).sample(0)["kspace"].numpy())
    argv = [part.format(pt=foreign, data=tmp_path / "volume.npy", out=tmp_path / "out") for part in command]
    assert cli_main(argv) == 2
    err = one_line_error(capsys)
    assert "checkpoint" in err and str(foreign) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ resume


def _trained(tmp_path, caplog) -> str:
    argv = ["train", "--model", "varnet", "--model-kwargs", str(TINY_VARNET), "--image-size", "16", "--coils", "2",
            "--slices", "4", "--steps", "2", "--lr", "3e-4", "--acceleration", "2", "--center-fraction", "0.25",
            "--out", str(tmp_path / "run"), "--no-progress", "train.log_every=1"]
    assert cli_main(argv) == 0
    caplog.clear()
    return str(tmp_path / "run" / "checkpoint.pt")


def test_resume_keeps_the_checkpoints_settings_and_says_where_each_came_from(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mbdlfast")
    checkpoint = _trained(tmp_path, caplog)
    assert cli_main(["train", "--resume", checkpoint, "--steps", "3", "--no-progress"]) == 0  # no --model needed
    resumed = load_checkpoint(checkpoint)
    config = resumed.train_config
    assert resumed.step == 3 and resumed.model_name == "varnet"
    assert config["model"]["kwargs"]["num_cascades"] == 1 and config["train"]["lr"] == 3e-4
    assert (config["data"]["image_size"], config["data"]["acceleration"], config["data"]["center_fraction"]) == (16, 2, 0.25)
    assert config["out"] == str(tmp_path / "run") and config["train"]["steps"] == 3
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resume: ")]
    from_checkpoint = next(line for line in lines if line.startswith("resume: from the checkpoint"))
    assert "model.name" in from_checkpoint and "train.lr" in from_checkpoint and "data.image_size" in from_checkpoint
    assert "train.steps" not in from_checkpoint
    assert any(line.startswith("resume: from the command line:") and "train.steps=3" in line for line in lines)


def test_resume_values_given_again_win_and_a_conflicting_model_is_refused(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO, logger="mbdlfast")
    checkpoint = _trained(tmp_path, caplog)
    assert cli_main(["train", "--resume", checkpoint, "--steps", "3", "--lr", "1e-4", "--no-progress"]) == 0
    assert load_checkpoint(checkpoint).train_config["train"]["lr"] == 1e-4
    assert cli_main(["train", "--resume", checkpoint, "--model", "deq", "--steps", "4"]) == 2
    assert "holds a 'varnet' model" in one_line_error(capsys)


# ---------------------------------------------------------------------------------------- input formats


def test_train_reads_h5_cfl_and_npy_like_recon(tmp_path):
    from mbdlfast.data.synthetic import write_fastmri_h5

    data = tmp_path / "data"
    data.mkdir()
    volumes = SyntheticMulticoil(24, 24, 2, seed=4).batch(range(3))["kspace"].numpy()
    write_fastmri_h5(data / "a.h5", volumes[:1])
    write_cfl(data / "b", np.moveaxis(volumes[1], 0, -1))
    np.save(data / "c.npy", volumes[2:])
    assert cli_main(["train", "--model", "varnet", "--model-kwargs", str(TINY_VARNET), "--data", str(data),
                     "--image-size", "24", "--center-fraction", "0.25", "--steps", "2", "--batch-size", "1",
                     "--out", str(tmp_path / "run"), "--no-progress", "data.val_fraction=0.34"]) == 0
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint.step == 2 and checkpoint.history[-1]["val_psnr"] > 0


def test_train_refuses_undersampled_volumes(tmp_path, capsys):
    kspace = SyntheticMulticoil(24, 24, 2, seed=4).sample(0)["kspace"].numpy()
    kspace[..., 1::2] = 0
    np.save(tmp_path / "under.npy", kspace)
    assert cli_main(["train", "--data", str(tmp_path / "under.npy"), "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    assert "undersampled" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_checkpoint_without_training_settings_can_be_resumed(tmp_path):
    model, kwargs = build_model("varnet", TINY_VARNET)
    save_checkpoint(tmp_path / "bare.pt", model, ModelConfig("varnet", kwargs))
    assert cli_main(["train", "--resume", str(tmp_path / "bare.pt"), "--steps", "1", "--image-size", "16",
                     "--coils", "2", "--slices", "4", "--center-fraction", "0.25", "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt").model_name == "varnet"
