"""Synthetic multicoil data: phantoms, the forward model, SNR, determinism and fastMRI h5 output."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mbdlfast.data.synthetic import (
    PHANTOM_FAMILIES,
    SyntheticMulticoil,
    SyntheticMulticoilDataset,
    phantom,
    write_fastmri_h5,
    write_synthetic_fastmri_folder,
)


def centred_fft2_complex128(x: torch.Tensor) -> torch.Tensor:
    """fastMRI's fft2c written out with numpy in complex128 (independent of mbdlfast.ops.fft)."""
    array = np.fft.ifftshift(x.numpy().astype(np.complex128), axes=(-2, -1))
    return torch.from_numpy(np.fft.fftshift(np.fft.fft2(array, norm="ortho"), axes=(-2, -1)))


@pytest.mark.parametrize("family", PHANTOM_FAMILIES)
def test_phantom_families(family):
    images = [phantom(family, 37, 30, rng=np.random.default_rng(s)) for s in range(3)]
    for image in images:
        assert image.shape == (37, 30) and np.iscomplexobj(image)
        magnitude = np.abs(image)
        assert 0.3 < magnitude.max() < 1.5
        assert magnitude[0].max() == 0 and magnitude[:, 0].max() == 0  # the object fits in the image
        assert np.abs(np.angle(image[magnitude > 0])).max() <= 1.5 + 1e-9  # smooth phase, at most max_phase
    assert not np.allclose(images[0], images[1])  # per-seed variation


def test_families_differ():
    brain, shepp, ellipses = (np.abs(phantom(f, 48, 48, rng=0)) for f in PHANTOM_FAMILIES)
    assert not np.allclose(brain, shepp) and not np.allclose(brain, ellipses)
    # the brain has a dark skull ring between scalp and CSF along the mid row: bright, dark, bright
    row = brain[24]
    nonzero = np.flatnonzero(row > 0)
    inner = row[nonzero[0]:nonzero[0] + 8]
    assert inner.min() < 0.2 < inner.max()


@pytest.mark.parametrize("family", PHANTOM_FAMILIES)
def test_noise_free_forward_model(family):
    sample = SyntheticMulticoil(33, 24, 3, snr_db=None, seed=4, family=family).sample(2)
    kspace, maps, target = sample["kspace"], sample["maps"], sample["target"]
    assert kspace.shape == maps.shape == (3, 33, 24) and target.shape == (33, 24)
    assert kspace.dtype == maps.dtype == target.dtype == torch.complex64
    expected = centred_fft2_complex128(maps.to(torch.complex128) * target.to(torch.complex128))
    assert torch.allclose(kspace.to(torch.complex128), expected, atol=1e-5 * expected.abs().max())
    assert float(sample["noise_std"]) == 0.0


@pytest.mark.parametrize("snr_db", [5.0, 20.0, 40.0])
def test_snr_achieved(snr_db):
    generator = SyntheticMulticoil(64, 48, 4, snr_db=snr_db, seed=7)
    batch = generator.batch([0, 1])
    clean = centred_fft2_complex128(batch["maps"].to(torch.complex128) * batch["target"].to(torch.complex128)[:, None])
    noise = batch["kspace"].to(torch.complex128) - clean
    for b in range(2):
        signal_power = clean[b].abs().square().mean()
        noise_power = noise[b].abs().square().mean()
        measured = 10 * math.log10(signal_power / noise_power)
        assert abs(measured - snr_db) < 0.1  # 12288 samples: the estimate's std is ~0.04 dB
        assert math.isclose(float(batch["noise_std"][b]) ** 2, float(signal_power) / 10 ** (snr_db / 10), rel_tol=1e-6)
        # circular: equal power in the real and imaginary parts, zero mean
        real, imag = noise[b].real.square().mean(), noise[b].imag.square().mean()
        assert abs(float(real / imag) - 1) < 0.06
        assert abs(complex(noise[b].mean())) < 4 * float(batch["noise_std"][b]) / math.sqrt(noise[b].numel())


def test_deterministic_and_batch_consistent():
    generator = SyntheticMulticoil(20, 17, 2, snr_db=25.0, seed=3)
    batch = generator.batch([4, 1, 2])
    again = SyntheticMulticoil(20, 17, 2, snr_db=25.0, seed=3).batch([4, 1, 2])
    for key in batch:
        assert torch.equal(batch[key], again[key]), key
    single = generator.sample(1)
    for key in ("kspace", "maps", "target", "noise_std"):
        assert torch.allclose(single[key], batch[key][1], rtol=1e-6, atol=1e-7), key
    other = SyntheticMulticoil(20, 17, 2, snr_db=25.0, seed=4).sample(1)
    assert not torch.allclose(other["target"], single["target"])
    assert not torch.allclose(generator.sample(0)["maps"], single["maps"])  # coils vary per sample


def test_dataset_and_dataloader():
    dataset = SyntheticMulticoilDataset(5, 24, 20, 3, snr_db=30.0, seed=1, family="shepp_logan")
    assert len(dataset) == 5
    item = dataset[3]
    assert item["kspace"].shape == (3, 24, 20) and item["target"].shape == (24, 20)
    assert torch.equal(item["target"], dataset.generator.sample(3)["target"])
    assert torch.equal(dataset[-2]["kspace"], item["kspace"])
    with pytest.raises(IndexError):
        dataset[5]
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["kspace"].shape == (2, 3, 24, 20) and batch["kspace"].dtype == torch.complex64


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"family": "knee"}, ValueError),
        ({"snr_db": math.inf}, ValueError),
        ({"seed": -1}, ValueError),
        ({"num_coils": 0}, ValueError),
        ({"height": 4.0}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    args = {"height": 8, "width": 8, "num_coils": 2, **kwargs}
    with pytest.raises(error, match=next(iter(kwargs))):
        SyntheticMulticoil(args.pop("height"), args.pop("width"), args.pop("num_coils"), **args)


def test_write_fastmri_h5_layout(tmp_path):
    import fastmri
    from fastmri.data.transforms import center_crop

    kspace = SyntheticMulticoil(40, 31, 3, seed=2).batch(range(2))["kspace"]
    path = write_fastmri_h5(tmp_path / "vol.h5", kspace, recon_size=(24, 25), patient_id="p1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.h5"]  # no temporary left behind
    with h5py.File(path, "r") as hf:
        np.testing.assert_array_equal(hf["kspace"][()], kspace.numpy())
        assert hf["kspace"].dtype == np.complex64
        recon = hf["reconstruction_rss"][()]
        assert recon.dtype == np.float32 and recon.shape == (2, 24, 25)
        # fastMRI's own RSS + centre crop, from complex128 k-space
        images = fastmri.ifft2c(torch.view_as_real(kspace.to(torch.complex128)))
        expected = center_crop(fastmri.rss(fastmri.complex_abs(images), dim=1), (24, 25))
        np.testing.assert_allclose(recon, expected.numpy(), rtol=1e-5, atol=1e-6 * float(expected.max()))
        assert hf.attrs["max"] == pytest.approx(float(recon.max()))
        assert hf.attrs["norm"] == pytest.approx(float(np.linalg.norm(recon)))
        assert hf.attrs["acquisition"] == "AXT2" and hf.attrs["patient_id"] == "p1"
        assert b"ismrmrdHeader" in hf["ismrmrd_header"][()]


def test_write_fastmri_h5_defaults_and_errors(tmp_path):
    small = torch.randn(1, 2, 12, 10, dtype=torch.complex64)
    with h5py.File(write_fastmri_h5(tmp_path / "s.h5", small), "r") as hf:
        assert hf["reconstruction_rss"].shape == (1, 12, 10)  # recon size capped to the image
        assert hf.attrs["patient_id"] == "s"
    with pytest.raises(ValueError, match="kspace"):
        write_fastmri_h5(tmp_path / "bad.h5", small[0])
    with pytest.raises(ValueError, match="reconstruction_rss"):
        write_fastmri_h5(tmp_path / "bad.h5", small, reconstruction_rss=np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="recon_size"):
        write_fastmri_h5(tmp_path / "bad.h5", small, recon_size=(13, 10))
    assert not (tmp_path / "bad.h5").exists()


def test_write_synthetic_folder(tmp_path):
    paths = write_synthetic_fastmri_folder(tmp_path / "fold", 2, 3, 24, 22, 2, seed=5, family="ellipses")
    assert [p.name for p in paths] == ["synthetic_ellipses_000.h5", "synthetic_ellipses_001.h5"]
    generator = SyntheticMulticoil(24, 22, 2, seed=5, family="ellipses")
    with h5py.File(paths[1], "r") as hf:
        assert hf["kspace"].shape == (3, 2, 24, 22)
        np.testing.assert_array_equal(hf["kspace"][0], generator.sample(3)["kspace"].numpy())
