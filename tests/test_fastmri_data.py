"""FastMRISliceDataset: parity with fastMRI's SliceDataset, slice contents, corrupt-file errors."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mbdlfast.data.fastmri import FastMRISliceDataset
from mbdlfast.data.synthetic import SyntheticMulticoil, write_fastmri_h5
from references import reference_module

mri_data = reference_module("fastmri.data.mri_data")


@pytest.fixture(scope="module")
def volume_folder(tmp_path_factory):
    """Three volumes: odd sizes, cropped recon sizes, and zero-padded k-space (non-trivial padding)."""
    root = tmp_path_factory.mktemp("fastmri")
    generator = SyntheticMulticoil(41, 36, 3, snr_db=30.0, seed=11)
    write_fastmri_h5(root / "b_vol.h5", generator.batch(range(3))["kspace"], recon_size=(30, 30))
    write_fastmri_h5(root / "a_vol.h5", generator.batch(range(3, 5))["kspace"])
    padded = generator.batch([5])["kspace"]
    padded[..., :3] = 0
    padded[..., -4:] = 0
    write_fastmri_h5(root / "c_vol.h5", padded, encoding_limits=(15, 28), acquisition="AXFLAIR")
    return root


def test_metadata_and_samples_match_fastmri(volume_folder):
    ours = FastMRISliceDataset(volume_folder)
    reference = mri_data.SliceDataset(volume_folder, challenge="multicoil")
    assert len(ours) == len(reference) == 6
    for index in range(len(ours)):
        sample = ours[index]
        kspace, mask, target, attrs, fname, slice_index = reference[index]
        assert (sample["fname"], sample["slice"]) == (fname, slice_index)
        assert sample["attrs"] == attrs
        assert sample["kspace"].dtype == torch.complex64
        np.testing.assert_array_equal(sample["kspace"].numpy(), kspace)
        assert sample["target"].dtype == torch.float32
        np.testing.assert_array_equal(sample["target"].numpy(), target)
        assert mask is None and "mask" not in sample
    padded = ours[5]["attrs"]
    assert (padded["padding_left"], padded["padding_right"]) == (3, 32)  # 36 // 2 - 15, 3 + 28 + 1
    assert padded["acquisition"] == "AXFLAIR"
    assert ours[0]["attrs"]["recon_size"] == (41, 36, 1) and ours[2]["attrs"]["recon_size"] == (30, 30, 1)


def test_files_list_single_file_and_transform(volume_folder):
    files = [volume_folder / "c_vol.h5", str(volume_folder / "a_vol.h5")]
    dataset = FastMRISliceDataset(files, transform=lambda s: (s["fname"], s["slice"], s["kspace"].shape))
    assert [dataset[i] for i in range(3)] == [
        ("c_vol.h5", 0, (3, 41, 36)), ("a_vol.h5", 0, (3, 41, 36)), ("a_vol.h5", 1, (3, 41, 36))]
    assert len(FastMRISliceDataset(str(volume_folder / "b_vol.h5"))) == 3


def test_dataloader_collates(volume_folder):
    batch = next(iter(DataLoader(FastMRISliceDataset(volume_folder), batch_size=2)))
    assert batch["kspace"].shape == (2, 3, 41, 36) and batch["target"].shape == (2, 41, 36)
    assert batch["fname"] == ["a_vol.h5", "a_vol.h5"] and batch["slice"].tolist() == [0, 1]


def test_singlecoil_and_headerless(tmp_path):
    kspace = (np.random.default_rng(0).standard_normal((2, 9, 7)) * (1 + 1j)).astype(np.complex64)
    with h5py.File(tmp_path / "single.h5", "w") as hf:
        hf["kspace"] = kspace
        hf["reconstruction_esc"] = np.ones((2, 5, 5), np.float32)
        hf["mask"] = np.ones(7, dtype=bool)
    dataset = FastMRISliceDataset(tmp_path, challenge="singlecoil")
    sample = dataset[1]
    assert sample["kspace"].shape == (1, 9, 7)
    np.testing.assert_array_equal(sample["kspace"][0].numpy(), kspace[1])
    assert sample["target"].shape == (5, 5) and sample["mask"].shape == (7,)
    assert sample["attrs"]["encoding_size"] == (9, 7, 1) and sample["attrs"]["recon_size"] == (5, 5, 1)
    assert (sample["attrs"]["padding_left"], sample["attrs"]["padding_right"]) == (0, 7)
    with pytest.raises(ValueError, match="single.h5.*multicoil challenge expects a complex 4-D"):
        FastMRISliceDataset(tmp_path)


def test_bad_arguments_and_missing_paths(tmp_path, volume_folder):
    with pytest.raises(ValueError, match="challenge"):
        FastMRISliceDataset(volume_folder, challenge="knee")
    with pytest.raises(ValueError, match="nothere.h5: no such file"):
        FastMRISliceDataset(tmp_path / "nothere.h5")
    with pytest.raises(ValueError, match="nothere.h5: no such file"):
        FastMRISliceDataset([volume_folder / "a_vol.h5", tmp_path / "nothere.h5"])
    with pytest.raises(ValueError, match="no .h5 files"):
        FastMRISliceDataset(tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        FastMRISliceDataset([])


def _copy(source, target, num_bytes=None):
    data = source.read_bytes()
    target.write_bytes(data if num_bytes is None else data[:num_bytes])
    return target


def test_corrupt_files_raise_naming_the_file(tmp_path, volume_folder):
    source = volume_folder / "a_vol.h5"
    size = source.stat().st_size
    (tmp_path / "garbage.h5").write_bytes(b"not an hdf5 file" * 10)
    for path in (tmp_path / "garbage.h5", _copy(source, tmp_path / "truncated.h5", size // 2)):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable h5 file"):
            FastMRISliceDataset(path)
    with h5py.File(tmp_path / "nokspace.h5", "w") as hf:
        hf["reconstruction_rss"] = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="nokspace.h5: no 'kspace' dataset"):
        FastMRISliceDataset(tmp_path / "nokspace.h5")
    with h5py.File(_copy(source, tmp_path / "badheader.h5"), "a") as hf:
        del hf["ismrmrd_header"]
        hf["ismrmrd_header"] = b"<ismrmrdHeader><broken"
    with pytest.raises(ValueError, match="badheader.h5: ismrmrd_header is not valid XML"):
        FastMRISliceDataset(tmp_path / "badheader.h5")


def test_file_damaged_after_indexing(tmp_path, volume_folder):
    path = _copy(volume_folder / "a_vol.h5", tmp_path / "later.h5")
    dataset = FastMRISliceDataset(path)
    _copy(volume_folder / "a_vol.h5", path, path.stat().st_size // 2)
    with pytest.raises(ValueError, match="later.h5: cannot read slice 1"):
        dataset[1]
