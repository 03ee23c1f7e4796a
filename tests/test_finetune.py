"""Fine-tuning modes (supervised, school, self-supervised EI, sums, none), the rotations behind EI,
the teacher-file guard and the ``mbdlfast finetune`` command."""
from __future__ import annotations

import copy
import hashlib
import math

import pytest
import torch

from mbdlfast.cli import main as cli_main
from mbdlfast.training import (
    DataConfig, ModelConfig, TrainingSlices, build_model, collate_batch, load_checkpoint, save_checkpoint
)
from mbdlfast.finetune import build_objective, finetune
from mbdlfast.training.losses import loss_function
from mbdlfast.finetune.modes import measurement_consistency, parse_mode
from mbdlfast.training.registry import model_spec
from mbdlfast.finetune.rotations import rotate_bilinear, rotate_quarter_turns
from mbdlfast.ops.fft import fft2c
from mbdlfast.physics.sense import SenseOperator

TINY = {
    "deq": {"prior_kwargs": {"n_resblocks": 1, "n_feats": 8}, "solver_kwargs": {"max_iter": 5}},
    "modl": {"num_iter": 2, "cg_iter": 3, "prior_kwargs": {"depth": 3, "channels": 8}},
    "varnet": {"num_cascades": 2, "chans": 4, "pools": 2},  # registry default output="image"
}
DATA = DataConfig(image_size=32, num_coils=2, num_slices=3, val_fraction=0.34)


def tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, TINY[name])[0]


def one_batch(size: int = 2, data: DataConfig = DATA):
    dataset = TrainingSlices(data, seed=0)
    return collate_batch([dataset[i] for i in range(size)])


def file_hash(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(student, name, mode, **kwargs):
    settings = dict(model_name=name, model_kwargs=TINY[name], mode=mode, data=DATA, steps=2, lr=1e-3, progress=False)
    return finetune(student, **{**settings, **kwargs})


# ------------------------------------------------------------------------------------------ rotations


@pytest.mark.parametrize("size", [8, 9])
def test_rotated_maps_and_image_commute_with_the_operator(size):
    """A_g T_g x = M · T_g(F S x) exactly for quarter turns: rotating image and maps alike rotates the
    fully sampled k-space about its centre (and with a full mask, A_g T_g x = T_g A x)."""
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(3, size, size, dtype=torch.complex128, generator=generator)
    maps = torch.randn(3, 2, size, size, dtype=torch.complex128, generator=generator)
    mask = torch.rand(3, size, generator=generator) < 0.5
    turns = torch.tensor([1, 2, 3])
    rotated = SenseOperator(rotate_quarter_turns(maps, turns), mask, mask_is_2d=False).A(rotate_quarter_turns(x, turns))
    expected = rotate_quarter_turns(fft2c(maps * x[:, None]), turns) * mask[:, None, None, :]
    torch.testing.assert_close(rotated, expected, rtol=0, atol=1e-12)
    full = torch.ones(size, dtype=torch.bool)
    torch.testing.assert_close(SenseOperator(rotate_quarter_turns(maps, turns), full).A(rotate_quarter_turns(x, turns)),
                               rotate_quarter_turns(SenseOperator(maps, full).A(x), turns), rtol=0, atol=1e-12)
    # four quarter turns are the identity; a turn is not
    assert torch.equal(rotate_quarter_turns(x, torch.tensor([4, 4, 4])), x)
    assert not torch.allclose(rotate_quarter_turns(x, turns), x)


@pytest.mark.parametrize("size", [8, 9])
def test_bilinear_rotation_by_right_angles_matches_quarter_turns(size):
    x = torch.randn(2, 3, size, size, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    turns = torch.tensor([1, 3])
    bilinear = rotate_bilinear(x, turns.double() * math.pi / 2)
    exact = rotate_quarter_turns(x, turns)
    border = 1 - size % 2  # even sizes: the quarter turn wraps row/column 0 around, bilinear reads zeros there
    torch.testing.assert_close(bilinear[..., border:, border:], exact[..., border:, border:], rtol=0, atol=1e-12)
    # an odd angle interpolates; non-square images keep their shape and an angle of 0 is the identity
    assert not torch.allclose(rotate_bilinear(x, torch.tensor([0.3, 0.3])), x, atol=1e-3)
    wide = torch.randn(2, 6, 10, dtype=torch.complex64)
    assert rotate_bilinear(wide, torch.tensor([1.0, 2.0])).shape == wide.shape
    torch.testing.assert_close(rotate_bilinear(wide, torch.zeros(2)), wide, rtol=0, atol=1e-6)


def test_rotation_arguments_are_checked():
    with pytest.raises(ValueError, match="square"):
        rotate_quarter_turns(torch.zeros(1, 4, 6, dtype=torch.complex64), torch.tensor([1]))
    with pytest.raises(ValueError, match="turns: expected one value per sample"):
        rotate_quarter_turns(torch.zeros(2, 4, 4, dtype=torch.complex64), torch.tensor([1]))


# ---------------------------------------------------------------------------------------- objectives


def test_mode_parsing():
    assert parse_mode("school") == ("school",)
    assert parse_mode("supervised + school") == ("supervised", "school")
    assert parse_mode("none") == ()
    for bad in ("distill", "school+school", "none+school", ""):
        with pytest.raises(ValueError, match="mode"):
            parse_mode(bad)
    with pytest.raises(ValueError, match="teacher"):
        build_objective("school", model_spec("deq").reconstruct, loss_function("smooth_l1"))


@pytest.mark.parametrize("name", sorted(TINY))
def test_school_loss_is_zero_when_the_student_is_the_teacher(name):
    teacher, batch = tiny(name).eval(), one_batch()
    spec = model_spec(name)
    objective = build_objective("school", spec.reconstruct, loss_function(spec.loss), teacher=teacher)
    with torch.no_grad():
        assert objective(copy.deepcopy(teacher).eval(), batch).item() == 0.0
        assert objective(tiny(name, seed=1).eval(), batch).item() > 0  # a different student is penalised


def test_self_supervised_refuses_a_magnitude_output():
    varnet, _ = build_model("varnet", {**TINY["varnet"], "output": "rss"})
    spec = model_spec("varnet")
    objective = build_objective("self_supervised", spec.reconstruct, loss_function("ssim"))
    with pytest.raises(ValueError, match="output='image'"):
        objective(varnet, one_batch(1))


# ----------------------------------------------------------------------------------------- finetune


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("mode", ["supervised", "school", "self_supervised", "supervised+school",
                                  "school+self_supervised"])
def test_every_mode_trains_every_family(name, mode, tmp_path):
    teacher = tiny(name)
    student = tiny(name, seed=1)
    before = copy.deepcopy(student.state_dict())
    result = run(student, name, mode, teacher=teacher, out=tmp_path)
    assert [record["step"] for record in result.history] == [1, 2]
    assert all(math.isfinite(record["loss"]) and record["loss"] > 0 for record in result.history)
    assert set(result.validation) == {"val_psnr", "val_ssim"}
    trained = result.model.state_dict()
    assert any(v.is_floating_point() and not torch.equal(v, before[k]) for k, v in trained.items()), "nothing moved"
    for key, value in student.state_dict().items():  # the caller's student is untouched (a copy is trained)
        assert torch.equal(value, before[key]), key
    saved = load_checkpoint(result.checkpoint, expected_model=name)
    assert saved.extra["finetune"]["mode"] == mode and saved.step == 2
    for key, value in trained.items():
        assert torch.equal(saved.model.state_dict()[key], value), key


def test_self_supervised_with_any_angle_rotations():
    result = run(tiny("varnet"), "varnet", "self_supervised", rotation="any", ei_weight=2.0)
    assert all(math.isfinite(record["loss"]) for record in result.history)
    with pytest.raises(ValueError, match="rotation"):
        run(tiny("varnet"), "varnet", "self_supervised", rotation="octant")


def test_mode_none_returns_the_student_unchanged(tmp_path):
    student = tiny("deq")
    result = finetune(student, model_name="deq", model_kwargs=TINY["deq"], mode="none", out=tmp_path)
    assert result.model is student and result.history == [] and result.checkpoint is None
    assert list(tmp_path.iterdir()) == []


def test_self_supervised_lowers_measurement_consistency_on_one_slice():
    data = DataConfig(image_size=32, num_coils=2, num_slices=2, val_fraction=0.5, snr_db=None)
    batch = one_batch(2, data)
    student = tiny("deq")
    spec = model_spec("deq")

    def consistency(model):
        with torch.no_grad():
            return measurement_consistency(spec.reconstruct(model.eval(), batch), batch).item()

    start = consistency(student)
    result = finetune(student, model_name="deq", model_kwargs=TINY["deq"], mode="self_supervised", data=data,
                      steps=20, lr=3e-3, progress=False)
    losses = [record["loss"] for record in result.history]
    assert consistency(result.model) < 0.7 * start
    assert sum(losses[-5:]) < sum(losses[:5])


def test_the_teacher_checkpoint_is_never_written(tmp_path):
    teacher = tiny("deq")
    (tmp_path / "dense").mkdir()
    teacher_file = save_checkpoint(tmp_path / "dense" / "checkpoint.pt", teacher, ModelConfig("deq", TINY["deq"]))
    digest = file_hash(teacher_file)
    student = tiny("deq", seed=1)
    for out in (tmp_path / "dense", teacher_file, tmp_path / "dense" / ".." / "dense"):
        with pytest.raises(ValueError, match="overwrite the teacher"):
            run(student, "deq", "school", teacher=teacher_file, out=out)
    result = run(student, "deq", "supervised+school", teacher=teacher_file, out=tmp_path / "student")
    assert result.checkpoint == tmp_path / "student" / "checkpoint.pt"
    assert load_checkpoint(result.checkpoint).extra["finetune"]["teacher"] == str(teacher_file)
    assert file_hash(teacher_file) == digest


def test_a_student_of_another_architecture_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="student: its parameters"):
        finetune(tiny("deq"), model_name="deq", mode="supervised", data=DATA, steps=1, out=tmp_path)  # no kwargs
    with pytest.raises(ValueError, match="teacher"):
        run(tiny("deq"), "deq", "school", teacher=tiny("modl"), out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_school_finetunes_a_structurally_pruned_student(tmp_path):
    from mbdlfast.prune import count_params, prune_structured  # imports torch-pruning

    kwargs = {"prior_kwargs": {"n_resblocks": 1, "n_feats": 16}, "solver_kwargs": {"max_iter": 5}}
    torch.manual_seed(0)
    teacher, _ = build_model("deq", kwargs)
    batch = one_batch(1)
    student = prune_structured(teacher, (batch.kspace, batch.physics()), 0.5)
    assert count_params(student) < count_params(teacher)
    teacher_state = copy.deepcopy(teacher.state_dict())
    result = finetune(student, model_name="deq", model_kwargs=kwargs, mode="school", teacher=teacher, data=DATA,
                      steps=2, lr=1e-3, progress=False, out=tmp_path)
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items())  # teacher untouched
    saved = load_checkpoint(result.checkpoint, expected_model="deq")
    assert count_params(saved.model) == count_params(result.model)
    with torch.no_grad():
        torch.testing.assert_close(saved.model.eval()(batch.kspace, batch.physics()),
                                   result.model(batch.kspace, batch.physics()), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------- CLI


def test_cli_finetune_end_to_end(tmp_path, capsys):
    teacher = tiny("deq")
    config = ModelConfig("deq", TINY["deq"])
    teacher_file = save_checkpoint(tmp_path / "dense.pt", teacher, config)
    student_file = save_checkpoint(tmp_path / "student.pt", tiny("deq", seed=1), config)
    digest = file_hash(teacher_file)
    common = ["finetune", "--student", str(student_file), "--teacher", str(teacher_file), "--data", "synthetic",
              "--image-size", "32", "--coils", "2", "--slices", "3", "--steps", "2", "--no-progress",
              "data.val_fraction=0.34"]
    assert cli_main([*common, "--mode", "school+self_supervised", "--ei-weight", "0.5", "--lr", "1e-3",
                     "--out", str(tmp_path / "out")]) == 0
    saved = load_checkpoint(tmp_path / "out" / "checkpoint.pt", expected_model="deq")
    assert saved.step == 2 and saved.train_config["train"]["lr"] == 1e-3
    assert saved.extra["finetune"]["mode"] == "school+self_supervised" and saved.extra["finetune"]["ei_weight"] == 0.5
    (tmp_path / "guarded").mkdir()
    guarded = save_checkpoint(tmp_path / "guarded" / "checkpoint.pt", teacher, config)
    capsys.readouterr()
    assert cli_main([*common[:4], str(guarded), *common[5:], "--out", str(tmp_path / "guarded")]) == 2
    assert "overwrite the teacher" in capsys.readouterr().err
    assert cli_main([*common, "--mode", "distill", "--out", str(tmp_path / "bad")]) == 2
    assert "mode" in capsys.readouterr().err
    assert cli_main([*common[:3], *common[5:], "--mode", "school", "--out", str(tmp_path / "bad")]) == 2
    assert "teacher: mode 'school' needs" in capsys.readouterr().err
    assert file_hash(teacher_file) == digest


def test_architecture_check_accepts_a_masked_student_and_refuses_another_model():
    from mbdlfast.training.checkpoint import check_architecture
    from mbdlfast.training.config import ModelConfig
    from mbdlfast.training.registry import build_model
    from mbdlfast.prune.masking import apply_masks, global_magnitude_masks

    kwargs = {"prior_kwargs": {"depth": 3, "channels": 8}}
    student, _ = build_model("modl", kwargs)
    apply_masks(student, global_magnitude_masks(student, 0.5))
    check_architecture(student, ModelConfig("modl", kwargs), "student")
    with pytest.raises(ValueError, match="student: its parameters do not match a 'deq'"):
        check_architecture(student, ModelConfig("deq", {}), "student")
