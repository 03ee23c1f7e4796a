"""Fine-tuning from undersampled acquisitions only (the seed's test-time tuning): the file's own 1D or
2D sampling is kept, never re-undersampled; maps from its calibration square; school and
self-supervised run without ground truth, supervised is refused; E2E-VarNet's self-supervised loss
measures with its own estimated maps."""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from mbdlfast.data.synthetic import SyntheticMulticoil
from mbdlfast.data.volumes import h5_is_fully_sampled, load_volume
from mbdlfast.finetune import finetune
from mbdlfast.finetune.modes import SelfSupervisedTerm, measurement_consistency
from mbdlfast.training import DataConfig, ModelConfig, OptimConfig, TrainConfig, build_model, collate_batch, train
from mbdlfast.training.data import AcquiredSlices, TrainingSlices, training_slices
from mbdlfast.training.losses import l1_loss
from mbdlfast.training.registry import model_spec
from mbdlfast.physics import masks

TINY_DEQ = {"prior_kwargs": {"n_resblocks": 1, "n_feats": 8}, "solver_kwargs": {"max_iter": 3}}
TINY_E2E = {"num_cascades": 1, "chans": 4, "pools": 1, "sens_chans": 4, "sens_pools": 1}
SIZE = 32


def line_mask() -> torch.Tensor:
    return masks.equispaced(SIZE, 2, 0.3, seed=0)


def poisson_like_mask(generator=None) -> torch.Tensor:
    """A (H,W) 2D pattern: a fully sampled 10x10 centre and random samples elsewhere."""
    pattern = torch.rand(SIZE, SIZE, generator=generator or torch.Generator().manual_seed(3)) < 0.35
    centre = slice(SIZE // 2 - 5, SIZE // 2 + 5)
    pattern[centre, centre] = True
    return pattern


def write_acquisition(path, mask: torch.Tensor, num_slices: int = 4):
    """Synthetic fully sampled slices (S,C,H,W) masked with ``mask``, saved as npy: an acquisition."""
    kspace = SyntheticMulticoil(SIZE, SIZE, 2, seed=1).batch(range(num_slices))["kspace"]
    sampled = mask[None, None, None, :] if mask.dim() == 1 else mask[None, None]
    np.save(path, (kspace * sampled).numpy())
    return path


def acquired_data(path, **overrides) -> DataConfig:
    return DataConfig(source=str(path), snr_db=None, val_fraction=0.25, **overrides)


@pytest.mark.parametrize("kind", ["1D lines", "2D pattern"])
def test_acquired_slices_keep_the_files_own_sampling(tmp_path, kind):
    mask = line_mask() if kind == "1D lines" else poisson_like_mask()
    path = write_acquisition(tmp_path / "scan.npy", mask)
    dataset = training_slices(acquired_data(path, image_size=16, acceleration=8), seed=0)
    assert isinstance(dataset, AcquiredSlices) and not dataset.has_reference
    volume = load_volume(path)
    for index in range(len(dataset)):
        item = dataset[index]
        assert "target" not in item and item["kspace"].shape == (2, SIZE, SIZE)  # no crop, no re-undersampling
        assert torch.equal(item["mask"], volume.mask)
        support = (item["kspace"] != 0).any(dim=0)
        expected = mask.expand(SIZE, -1) if mask.dim() == 1 else mask
        assert torch.equal(support, expected)
        scale = volume.kspace[index].abs().max() / item["kspace"].abs().max()
        torch.testing.assert_close(item["kspace"] * scale, volume.kspace[index])
    assert dataset.espirit_calls == len(dataset)


def test_acquired_maps_come_from_the_calibration_square_the_mask_keeps(tmp_path):
    """Calibration too small for ESPIRiT: a clear error naming the file, not a silent estimate."""
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[::2] = True  # no contiguous centre run
    path = write_acquisition(tmp_path / "nocalib.npy", mask)
    dataset = training_slices(acquired_data(path))
    with pytest.raises(ValueError, match="calibration"):
        dataset[0]


def test_a_folder_mixing_fully_sampled_and_undersampled_volumes_is_refused(tmp_path):
    write_acquisition(tmp_path / "a.npy", line_mask())
    write_acquisition(tmp_path / "b.npy", torch.ones(SIZE, dtype=torch.bool))
    with pytest.raises(ValueError, match="data.source.*mixes undersampled volumes \\(a.npy\\)"):
        training_slices(acquired_data(tmp_path))


def test_npy_volumes_are_read_once_to_choose_and_build_the_dataset(tmp_path, monkeypatch):
    import mbdlfast.data.volumes as volumes

    for name, mask in (("acquired.npy", line_mask()), ("full.npy", torch.ones(SIZE, dtype=torch.bool))):
        path = write_acquisition(tmp_path / name, mask)
        reads = []
        original = volumes.load_volume
        monkeypatch.setattr(volumes, "load_volume", lambda file, original=original: reads.append(file) or original(file))
        monkeypatch.setattr("mbdlfast.training.data.load_volume", volumes.load_volume)
        training_slices(acquired_data(path, image_size=16))
        assert reads == [path]
        monkeypatch.undo()


def test_fully_sampled_files_still_give_training_slices(tmp_path):
    path = write_acquisition(tmp_path / "full.npy", torch.ones(SIZE, dtype=torch.bool))
    dataset = training_slices(acquired_data(path, image_size=16))
    assert isinstance(dataset, TrainingSlices) and dataset.has_reference and dataset[0]["target"].shape == (16, 16)


def test_h5_sampling_is_read_from_its_mask_or_first_slice(tmp_path):
    kspace = SyntheticMulticoil(SIZE, SIZE, 2, seed=1).batch(range(2))["kspace"].numpy()
    with h5py.File(tmp_path / "full.h5", "w") as hf:
        hf["kspace"] = kspace
    with h5py.File(tmp_path / "masked.h5", "w") as hf:
        hf["kspace"] = kspace * line_mask().numpy()
        hf["mask"] = line_mask().numpy()
    with h5py.File(tmp_path / "zeros.h5", "w") as hf:
        hf["kspace"] = kspace * line_mask().numpy()
    assert h5_is_fully_sampled(tmp_path / "full.h5")
    assert not h5_is_fully_sampled(tmp_path / "masked.h5") and not h5_is_fully_sampled(tmp_path / "zeros.h5")


def test_batches_of_line_and_2d_masks_collate_to_2d_and_sizes_must_agree(tmp_path):
    lines = training_slices(acquired_data(write_acquisition(tmp_path / "l.npy", line_mask())))[0]
    pattern = training_slices(acquired_data(write_acquisition(tmp_path / "p.npy", poisson_like_mask())))[0]
    batch = collate_batch([lines, pattern])
    assert batch.target is None and batch.mask.shape == (2, SIZE, SIZE)
    assert torch.equal(batch.mask[0], line_mask().expand(SIZE, -1)) and batch.physics().is_2d
    smaller = {**pattern, "kspace": pattern["kspace"][..., :-1], "maps": pattern["maps"][..., :-1]}
    with pytest.raises(ValueError, match="batch_size=1"):
        collate_batch([lines, smaller])


@pytest.mark.parametrize("mode", ["school", "self_supervised", "school+self_supervised"])
@pytest.mark.parametrize("kind", ["1D lines", "2D pattern"])
def test_school_and_self_supervised_tune_on_acquisitions_without_ground_truth(tmp_path, mode, kind):
    mask = line_mask() if kind == "1D lines" else poisson_like_mask()
    path = write_acquisition(tmp_path / "scan.npy", mask)
    torch.manual_seed(0)
    student = build_model("deq", TINY_DEQ)[0]
    teacher = build_model("deq", TINY_DEQ)[0]
    result = finetune(student, model_name="deq", model_kwargs=TINY_DEQ, mode=mode, teacher=teacher,
                      data=acquired_data(path), steps=2, lr=1e-3, progress=False, out=tmp_path / "ft")
    assert result.checkpoint.is_file() and all(np.isfinite(record["loss"]) for record in result.history)
    assert set(result.validation) == {"val_data_residual"} and 0 < result.validation["val_data_residual"] < 10
    changed = [not torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), student.state_dict().values())]
    assert any(changed)


def test_supervised_training_on_acquisitions_is_refused_with_the_alternatives(tmp_path):
    path = write_acquisition(tmp_path / "scan.npy", line_mask())
    student = build_model("deq", TINY_DEQ)[0]
    with pytest.raises(ValueError, match="undersampled acquisitions.*school or self_supervised"):
        finetune(student, model_name="deq", model_kwargs=TINY_DEQ, mode="supervised+school", teacher=student,
                 data=acquired_data(path), steps=1, progress=False)
    config = TrainConfig(model=ModelConfig("deq", TINY_DEQ), data=acquired_data(path),
                         train=OptimConfig(steps=1, progress=False), out=str(tmp_path / "train"))
    with pytest.raises(ValueError, match="undersampled acquisitions"):
        train(config)


def e2e_batch(tmp_path):
    path = write_acquisition(tmp_path / "scan.npy", line_mask(), num_slices=2)
    dataset = training_slices(acquired_data(path))
    return collate_batch([dataset[0], dataset[1]])


def test_e2e_varnet_self_supervision_measures_with_its_own_estimated_maps(tmp_path):
    torch.manual_seed(0)
    model = build_model("e2e_varnet", TINY_E2E)[0]
    spec = model_spec("e2e_varnet")
    batch = e2e_batch(tmp_path)
    batch = dataclasses.replace(batch, maps=torch.randn_like(batch.maps))  # the batch's maps must not be used
    term = SelfSupervisedTerm(l1_loss, spec.reconstruct, mc_weight=1.0, ei_weight=0.0)
    prediction = spec.reconstruct(model, batch)
    loss = term(prediction, model, batch)
    own_maps = model.estimated_maps(batch.kspace, batch.physics())
    expected = measurement_consistency(prediction, dataclasses.replace(batch, maps=own_maps))
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(loss, measurement_consistency(prediction, batch))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.sens_net.parameters())


def test_models_with_given_maps_are_measured_with_the_batch_maps(tmp_path):
    model = build_model("deq", TINY_DEQ)[0]
    batch = e2e_batch(tmp_path)
    assert SelfSupervisedTerm.measured_with_model_maps(model, batch) is batch
    with pytest.raises(ValueError, match="estimate_sens"):
        build_model("varnet", {"num_cascades": 1, "chans": 4, "pools": 1})[0].estimated_maps(batch.kspace,
                                                                                            batch.physics())
