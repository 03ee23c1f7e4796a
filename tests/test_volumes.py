"""Whole-volume k-space loading for reconstruction: fastMRI h5 (file / folder), BART cfl, npy, bad files."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mbdlfast.data.cfl import write_cfl
from mbdlfast.data.synthetic import write_fastmri_h5, write_synthetic_fastmri_folder
from mbdlfast.data.volumes import is_contiguous, load_volume, load_volumes, volume_files


def random_kspace(*shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_fastmri_folder_loads_every_volume_in_name_order(tmp_path):
    paths = write_synthetic_fastmri_folder(tmp_path, 2, 3, 17, 12, 3, seed=1)
    volumes = load_volumes(tmp_path)
    assert [v.name for v in volumes] == [p.stem for p in paths]
    for volume, path in zip(volumes, paths):
        with h5py.File(path) as hf:
            expected = hf["kspace"][()]
            max_value = hf.attrs["max"]
        assert volume.kspace.dtype == torch.complex64 and volume.kspace.shape == (3, 3, 17, 12)
        np.testing.assert_array_equal(volume.kspace.numpy(), expected)
        assert volume.fully_sampled and volume.mask is None and volume.num_slices == 3
        assert volume.attrs["max"] == max_value and volume.attrs["recon_size"] == (17, 12, 1)
    assert [v.name for v in load_volumes(paths[1])] == [paths[1].stem]


def test_stored_mask_marks_the_volume_undersampled(tmp_path):
    mask = np.zeros(12, dtype=bool)
    mask[[0, 4, 5, 6, 7, 10]] = True
    path = write_fastmri_h5(tmp_path / "under.h5", random_kspace(2, 2, 9, 12) * mask)
    with h5py.File(path, "a") as hf:
        hf.create_dataset("mask", data=mask.astype(np.float32))
    volume = load_volume(path)
    assert not volume.fully_sampled
    assert volume.mask.dtype == torch.bool and volume.mask.tolist() == mask.tolist()


def test_sampled_columns_are_detected_without_a_mask(tmp_path):
    kspace = random_kspace(2, 3, 8, 11)
    gaps = np.ones(11, dtype=bool)
    gaps[[1, 2, 8]] = False
    np.save(tmp_path / "gaps.npy", kspace * gaps)
    volume = load_volume(tmp_path / "gaps.npy")
    assert not volume.fully_sampled and volume.mask.tolist() == gaps.tolist()
    # zero-padded edges (as in many fastMRI volumes) are a contiguous band: fully sampled
    padded = np.zeros(11, dtype=bool)
    padded[2:9] = True
    np.save(tmp_path / "padded.npy", kspace * padded)
    volume = load_volume(tmp_path / "padded.npy")
    assert volume.fully_sampled and volume.mask is None


def test_is_contiguous():
    assert is_contiguous(torch.tensor([False, True, True, False]))
    assert not is_contiguous(torch.tensor([True, False, True]))
    assert not is_contiguous(torch.zeros(3, dtype=torch.bool))


@pytest.mark.parametrize("shape", [(3, 7, 5), (2, 3, 7, 5)])
def test_npy_volumes(tmp_path, shape):
    kspace = random_kspace(*shape).astype(np.complex128)
    np.save(tmp_path / "v.npy", kspace)
    volume = load_volume(tmp_path / "v.npy")
    expected = kspace if len(shape) == 4 else kspace[None]
    assert volume.name == "v" and volume.kspace.dtype == torch.complex64 and volume.attrs == {}
    np.testing.assert_allclose(volume.kspace.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("bart_dims", [(9, 6, 4), (9, 6, 1, 4), (9, 6, 4, 1, 1)])
def test_cfl_dims_become_one_coil_slice(tmp_path, bart_dims):
    coil_images_kspace = random_kspace(4, 9, 6)  # (C, H, W)
    write_cfl(tmp_path / "b", np.moveaxis(coil_images_kspace, 0, -1).reshape(bart_dims))
    for given in ("b", "b.cfl", "b.hdr"):
        (volume,) = load_volumes(tmp_path / given)
        assert volume.name == "b" and volume.kspace.shape == (1, 4, 9, 6)
        np.testing.assert_array_equal(volume.kspace[0].numpy(), coil_images_kspace)


def test_single_coil_h5_gets_one_coil(tmp_path):
    path = tmp_path / "single.h5"
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=random_kspace(2, 8, 6))
    assert load_volume(path).kspace.shape == (2, 1, 8, 6)


def test_real_bart_brain(shared_data):
    (volume,) = load_volumes(shared_data / "mri" / "auto-espirit" / "brain_clean.cfl")
    assert volume.kspace.shape == (1, 8, 230, 180) and volume.fully_sampled


def _write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


BAD_FILES = {
    "missing": (lambda d: d / "nothing.h5", "does not exist"),
    "empty folder": (lambda d: (d / "empty").mkdir() or d / "empty", "no volumes"),
    "unknown kind": (lambda d: _write_bytes(d / "x.txt", b"hello"), "is not a volume"),
    "h5 without kspace": (lambda d: h5py.File(d / "nok.h5", "w").close() or d / "nok.h5", "no 'kspace'"),
    "corrupt h5": (lambda d: _write_bytes(d / "bad.h5", b"\x89HDF garbage" * 10), "not a readable h5"),
    "real npy": (lambda d: np.save(d / "real.npy", np.ones((2, 4, 4))) or d / "real.npy", "expected complex"),
    "2-D npy": (lambda d: np.save(d / "flat.npy", np.ones((4, 4), np.complex64)) or d / "flat.npy", "expected complex"),
    "corrupt npy": (lambda d: _write_bytes(d / "bad.npy", b"\x93NUMPY broken"), "not a readable .npy"),
    "3-D cfl": (lambda d: write_cfl(d / "vol", np.ones((4, 4, 3, 2), np.complex64)) or d / "vol.cfl", "BART dims"),
    "all zero": (lambda d: np.save(d / "zero.npy", np.zeros((2, 4, 4), np.complex64)) or d / "zero.npy", "all zero"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_give_one_line_errors_naming_the_path(tmp_path, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        load_volumes(path)
    text = str(info.value)
    assert "\n" not in text and str(path.with_suffix(".cfl") if case == "3-D cfl" else path) in text


def test_duplicate_names_in_a_folder(tmp_path):
    np.save(tmp_path / "a.npy", random_kspace(2, 4, 4))
    write_cfl(tmp_path / "a", random_kspace(4, 4, 2))
    with pytest.raises(ValueError, match=r"several files named \['a'\]"):
        volume_files(tmp_path)
