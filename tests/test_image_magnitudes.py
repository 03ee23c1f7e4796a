"""Synthetic multicoil data on random views of real images (family "images:<path>[,...]")."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mbdlfast.data.image_magnitudes import image_view
from mbdlfast.data.synthetic import SyntheticMulticoil, check_family, phantom
from mbdlfast.training import DataConfig, TrainConfig
from mbdlfast.training.config import ModelConfig, validate


def _disc(size: int = 96) -> np.ndarray:
    """A bright disc with an off-centre dark hole: its views show rotation, flip and zoom."""
    y, x = np.mgrid[:size, :size] / (size - 1) - 0.5
    image = (x**2 + y**2 < 0.16).astype(np.float64)
    image[(x - 0.15) ** 2 + (y - 0.05) ** 2 < 0.005] = 0.2
    return image


@pytest.fixture
def npy_family(tmp_path):
    path = tmp_path / "disc.npy"
    np.save(path, 3.0 * _disc() * np.exp(0.3j))  # complex and unnormalised: the magnitude, scaled to max 1
    return f"images:{path}"


def test_views_are_deterministic_varied_and_in_range(npy_family):
    views = [image_view(npy_family, np.random.default_rng(seed), 40, 33) for seed in range(4)]
    for view in views:
        assert view.shape == (40, 33) and view.dtype == np.float64
        assert view.min() >= 0.0 and 0.5 < view.max() <= 1.0
    assert np.array_equal(views[0], image_view(npy_family, np.random.default_rng(0), 40, 33))
    assert not np.allclose(views[0], views[1])


def test_png_reads_as_the_same_magnitude_and_several_images_mix(tmp_path, npy_family):
    from skimage import io

    png = tmp_path / "disc.png"  # the same disc as 8-bit RGB: luminance, scaled to max 1, equals the .npy magnitude
    io.imsave(png, np.stack([(255 * _disc()).astype(np.uint8)] * 3, axis=-1), check_contrast=False)
    for seed in range(3):
        from_png = image_view(f"images:{png}", np.random.default_rng(seed), 24, 24)
        assert np.allclose(from_png, image_view(npy_family, np.random.default_rng(seed), 24, 24), atol=1e-6)
    views = [image_view(f"{npy_family},{png}", np.random.default_rng(seed), 24, 24) for seed in range(8)]
    assert all(0.5 < v.max() <= 1.0 for v in views)


def test_multicoil_sample_on_image_views(npy_family):
    sample = SyntheticMulticoil(32, 32, 4, snr_db=None, seed=1, family=npy_family).sample(3)
    assert sample["kspace"].shape == (4, 32, 32) and sample["target"].dtype == torch.complex64
    image = phantom(npy_family, 32, 32, rng=np.random.default_rng(0))
    assert np.iscomplexobj(image) and np.abs(image).max() <= 1.0 + 1e-9


@pytest.mark.parametrize("family,error,match", [
    ("images:", ValueError, "at least one image"),
    ("images:/no/such/file.npy", FileNotFoundError, "does not exist"),
    ("knee", ValueError, "images:<path>"),
])
def test_bad_families(family, error, match):
    with pytest.raises(error, match=match):
        check_family(family)


def test_bad_image_contents(tmp_path):
    for name, array in (("zeros.npy", np.zeros((8, 8))), ("nan.npy", np.full((8, 8), np.nan)),
                        ("hypercube.npy", np.ones((2, 2, 8, 8))), ("empty.npy", np.ones((8, 8, 0)))):
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=name):
            image_view(f"images:{tmp_path / name}", np.random.default_rng(0), 8, 8)


def test_volume_views_draw_only_its_central_slices(tmp_path):
    """A 3D .npy is a volume of slices along its last axis; views come from the central half only."""
    volume = np.zeros((48, 48, 20))
    central = range(5, 15)  # CENTRAL_SLICES (0.25, 0.75) of 20 slices
    for index in central:
        volume[..., index] = (index + 1) * _disc(48)  # each slice a disc of its own brightness
    path = tmp_path / "volume.npy"
    np.save(path, volume)
    peaks = set()
    for seed in range(40):
        view = image_view(f"images:{path}", np.random.default_rng(seed), 24, 24)
        assert view.max() > 0.1  # never one of the empty outer slices
        peaks.add(round(float(np.quantile(view, 0.99)), 2))
    assert len(peaks) > 3  # several slices are drawn


def test_config_validation_names_the_setting(npy_family):
    ok = TrainConfig(model=ModelConfig("modl", {}), data=DataConfig(family=npy_family))
    assert validate(ok) is ok
    with pytest.raises(ValueError, match="data.family"):
        validate(TrainConfig(model=ModelConfig("modl", {}), data=DataConfig(family="images:/missing.npy")))


def test_family_mixture_draws_each_source(npy_family):
    family = f"ellipses|{npy_family}"
    assert check_family(family) == family
    drawn = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        source = ("ellipses", npy_family)[rng.integers(2)]  # the draw phantom() makes first
        expected = phantom(source, 32, 32, rng=rng)          # then the source's own draw, same stream
        assert np.allclose(phantom(family, 32, 32, rng=np.random.default_rng(seed)), expected)
        drawn.add(source)
    assert len(drawn) == 2
    with pytest.raises(ValueError, match="mixture"):
        check_family("ellipses|knee")
