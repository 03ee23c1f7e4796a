"""Added measurement noise at an input SNR, and per-slice accelerations, in the training data."""
import math

import pytest
import torch

from mbdlfast.data.noise import add_measurement_noise, check_snr_db
from mbdlfast.evaluation import prepare_slices
from mbdlfast.training.config import DataConfig, load_config
from mbdlfast.training.data import TrainingSlices


def _undersampled(slices=3, coils=4, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    kspace = torch.randn(slices, coils, size, size, dtype=torch.complex128, generator=generator)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[::3] = True
    return kspace * mask, mask


@pytest.mark.parametrize("snr_db", [0.0, 9.0, 20.0])
def test_the_input_snr_is_reached_on_the_measured_samples_of_each_slice(snr_db):
    clean, mask = _undersampled(size=64)
    clean[1] *= 10  # each slice's noise follows its own signal power
    noisy = add_measurement_noise(clean, snr_db, seed=(7, 0))
    for index in range(clean.shape[0]):
        signal = clean[index][..., mask]
        noise = (noisy - clean)[index][..., mask]
        measured = 10 * math.log10(signal.abs().square().mean() / noise.abs().square().mean())
        assert measured == pytest.approx(snr_db, abs=0.15)
        # circular: real and imaginary parts carry half the variance each
        assert noise.real.var().item() == pytest.approx(noise.imag.var().item(), rel=0.1)


def test_noise_lands_on_measured_samples_only_and_is_deterministic_in_the_seed():
    clean, mask = _undersampled()
    noisy = add_measurement_noise(clean, 9.0, seed=(1, 2))
    assert torch.all(noisy[..., ~mask] == 0) and torch.all(noisy[..., mask] != clean[..., mask])
    assert torch.equal(noisy, add_measurement_noise(clean, 9.0, seed=(1, 2)))
    assert not torch.equal(noisy, add_measurement_noise(clean, 9.0, seed=(1, 3)))
    single = add_measurement_noise(clean.to(torch.complex64), 9.0, seed=4)
    assert single.dtype == torch.complex64 and single.shape == clean.shape


@pytest.mark.parametrize("snr_db, message", [
    (float("nan"), "finite input SNR"), (float("inf"), "finite input SNR"), ("9", "finite input SNR"),
    (True, "finite input SNR"),
])
def test_bad_snr_is_a_clear_error(snr_db, message):
    clean, _ = _undersampled()
    with pytest.raises(ValueError, match=message):
        add_measurement_noise(clean, snr_db, seed=0)
    with pytest.raises(ValueError, match="noise_snr_db"):
        check_snr_db("noise_snr_db", snr_db)


def test_bad_kspace_is_a_clear_error():
    clean, _ = _undersampled()
    with pytest.raises(ValueError, match="kspace: expected complex"):
        add_measurement_noise(clean.real, 9.0, seed=0)
    with pytest.raises(ValueError, match="no measured"):
        add_measurement_noise(torch.zeros_like(clean), 9.0, seed=0)


def test_prepare_slices_adds_the_noise_before_the_maps_are_estimated():
    from mbdlfast.data.synthetic import SyntheticMulticoil
    kspace = SyntheticMulticoil(64, 64, 4, snr_db=None, seed=3).batch([0, 1])["kspace"]
    mask = torch.zeros(64, dtype=torch.bool)
    mask[::2] = True
    mask[24:40] = True
    settings = dict(fully_sampled=True, normalise=False, calib_width=16)
    clean = prepare_slices(kspace, mask, **settings)
    noisy = prepare_slices(kspace, mask, **settings, noise_snr_db=15.0, noise_seed=5)
    again = prepare_slices(kspace, mask, **settings, noise_snr_db=15.0, noise_seed=5)
    assert torch.equal(noisy.kspace, again.kspace) and torch.equal(noisy.maps, again.maps)
    assert not torch.equal(noisy.maps, clean.maps)  # the maps come from the noisy calibration lines
    noise = (noisy.kspace - clean.kspace)[..., mask]
    measured = 10 * math.log10(clean.kspace[..., mask].abs().square().mean() / noise.abs().square().mean())
    assert measured == pytest.approx(15.0, abs=0.5)
    assert torch.equal(noisy.reference, clean.reference)  # the reference stays the fully sampled, noise-free one


def test_training_slices_get_their_own_noise_and_acceleration():
    data = DataConfig(image_size=32, num_coils=3, num_slices=16, snr_db=None, normalise=False,
                      accelerations=(2, 8), noise_snr_db=9.0)
    slices = TrainingSlices(data, seed=3)
    rates = [slices.acceleration(index) for index in range(16)]
    assert set(rates) == {2, 8} and rates == [TrainingSlices(data, seed=3).acceleration(i) for i in range(16)]
    lines = {rate: slices[rates.index(rate)]["mask"].sum().item() for rate in (2, 8)}
    assert lines[2] >= 16 > lines[8]
    assert torch.equal(slices[5]["kspace"], slices[5]["kspace"])
    clean = TrainingSlices(DataConfig(image_size=32, num_coils=3, num_slices=16, snr_db=None, normalise=False,
                                      accelerations=(2, 8)), seed=3)[0]
    noisy = slices[0]
    measured = clean["mask"]
    noise = (noisy["kspace"] - clean["kspace"])[..., measured]
    snr = 10 * math.log10(clean["kspace"][..., measured].abs().square().mean() / noise.abs().square().mean())
    assert snr == pytest.approx(9.0, abs=0.5)


@pytest.mark.parametrize("overrides, message", [
    (["data.noise_snr_db=nan"], "data.noise_snr_db: expected a finite"),
    (["data.accelerations=4,0"], "data.accelerations: expected integers >= 1 or none"),
    (["data.source=.", "data.snr_db=20"], "use data.noise_snr_db"),
])
def test_config_errors_name_the_noise_and_acceleration_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides=overrides)


def test_config_reads_the_noise_and_accelerations():
    config = load_config(overrides=["data.noise_snr_db=9", "data.accelerations=4,8"])
    assert config.data.noise_snr_db == 9.0 and config.data.accelerations == (4, 8)
