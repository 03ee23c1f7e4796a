"""Super-resolution end to end (issue 20 items 3-5): images split by image, training patches and their
degradation, USRNet's quality metrics, training / pruning / school fine-tuning of USRNet, the
``mbdlfast sr`` command and bench_sr's table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import skimage.metrics
import torch

from mbdlfast.cli import main
from mbdlfast.data.sr_images import degrade, image_files, modcrop, read_rgb, scene_name, split_images
from mbdlfast.physics.blur import BlurDownsample
from mbdlfast.physics.blur_kernels import gaussian_kernel, random_kernel, usrnet_test_kernels
from mbdlfast.sr_metrics import sr_quality
from mbdlfast.super_resolution import aligned_bicubic, resolve_kernel
from mbdlfast.training import load_config
from mbdlfast.training.registry import model_spec

TINY = {"iterations": 2, "features": [8, 16, 16, 16], "blocks": 1, "hyper_features": 8}
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, array, check_contrast=False)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A small image tree: three training scenes (one in two versions, a mask beside it) and a test set."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    smooth = lambda h, w: (np.stack(np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h)), -1).sum(-1) / 2)  # noqa: E731
    for name, (h, w) in {"train/zebra.png": (72, 80), "train/zebra_GT.png": (60, 64), "train/kate.png": (64, 64),
                         "other/snail.png": (50, 70), "set5/bird.png": (54, 60)}.items():
        base = smooth(h, w)[..., None] * np.array([1.0, 0.7, 0.4]) + 0.2 * rng.random((h, w, 3))
        _write(root / name, (np.clip(base, 0, 1) * 255).astype(np.uint8))
    _write(root / "train/kate_mask.png", np.full((64, 64), 255, np.uint8))
    return root


def _config(images: Path, *overrides: str):
    return load_config(None, ["model.name=usrnet", f"data.source={images}", "data.image_size=36",
                              "data.sr.patches_per_image=2", *[f"model.kwargs.{k}={v}" for k, v in TINY.items()],
                              *overrides])


# ------------------------------------------------------------------------------------------------ data


def test_read_rgb_takes_grey_rgb_and_rgba_and_names_a_corrupt_file(tmp_path):
    grey = read_rgb(_write(tmp_path / "g.png", np.arange(12, dtype=np.uint8).reshape(3, 4) * 20))
    assert grey.shape == (3, 3, 4) and grey.dtype == torch.float32
    assert torch.equal(grey[0], grey[2]) and float(grey[0, 2, 3]) == pytest.approx(220 / 255)
    rgba = read_rgb(_write(tmp_path / "a.png", np.full((5, 6, 4), 128, np.uint8)))
    assert rgba.shape == (3, 5, 6)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png could not be read"):
        read_rgb(tmp_path / "bad.png")


def test_images_split_by_test_folder_masks_skipped_and_scenes_grouped(images):
    files = image_files(images)
    assert not any("mask" in path.name for path in files)
    train, test = split_images(images)
    assert [path.name for path in test] == ["bird.png"] and len(train) == 4
    assert scene_name(images / "train/zebra_GT.png") == scene_name(images / "train/zebra.png") == "zebra"
    assert scene_name(Path("x/zebra_crop.png")) == "zebra"
    with pytest.raises(ValueError, match="neither an image file nor a folder"):
        image_files(images / "missing")


def test_degrade_is_the_forward_model_plus_seeded_noise():
    image = torch.rand(2, 3, 36, 36, generator=torch.Generator().manual_seed(1))
    kernel = gaussian_kernel(9, 1.3).float()
    clean = degrade(image, kernel, 3, 0.0)
    assert torch.allclose(clean, BlurDownsample(kernel, 3).A(image))
    noisy = degrade(image, kernel, 3, torch.tensor([0.05, 0.0]), torch.Generator().manual_seed(2))
    again = degrade(image, kernel, 3, torch.tensor([0.05, 0.0]), torch.Generator().manual_seed(2))
    assert torch.equal(noisy, again)
    assert float((noisy - clean)[0].std()) == pytest.approx(0.05, rel=0.2)
    assert torch.equal(noisy[1], clean[1])
    assert modcrop(torch.zeros(3, 37, 41), 4).shape == (3, 36, 40)


def test_random_training_kernels_are_seeded_normalised_and_odd():
    first = random_kernel(np.random.default_rng(3))
    assert torch.equal(first, random_kernel(np.random.default_rng(3)))
    for fraction in (0.0, 1.0):
        kernel = random_kernel(np.random.default_rng(4), motion_fraction=fraction)
        assert kernel.shape == (25, 25) and float(kernel.sum()) == pytest.approx(1.0) and float(kernel.min()) >= 0
    with pytest.raises(ValueError, match="motion_fraction"):
        random_kernel(np.random.default_rng(0), motion_fraction=1.5)
    with pytest.raises(ValueError, match="sigma_range"):
        random_kernel(np.random.default_rng(0), sigma_range=(2.0, 1.0))


# --------------------------------------------------------------------------------------------- metrics


def test_sr_quality_matches_skimage_on_the_8_bit_images():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 40, 44, generator=generator)
    prediction = (target + 0.05 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    psnr, ssim = sr_quality(target, prediction, border=3)
    for b in range(2):
        t, p = (np.round(np.clip(x[b, :, 3:-3, 3:-3].double().numpy(), 0, 1) * 255) / 255 for x in (target, prediction))
        assert float(psnr[b]) == pytest.approx(skimage.metrics.peak_signal_noise_ratio(t, p, data_range=1), abs=1e-9)
        reference = skimage.metrics.structural_similarity(t, p, data_range=1, channel_axis=0, gaussian_weights=True,
                                                          sigma=1.5, use_sample_covariance=False)
        assert float(ssim[b]) == pytest.approx(reference, abs=1e-9)
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        sr_quality(target[..., :12, :12], prediction[..., :12, :12], border=1)
    with pytest.raises(ValueError, match="differs"):
        sr_quality(target, prediction[..., :-2])


def test_aligned_bicubic_passes_through_the_observed_pixels():
    y = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    for scale in (2, 3):
        up = aligned_bicubic(y, scale)
        assert up.shape == (1, 3, 9 * scale, 11 * scale)
        assert torch.allclose(up[..., ::scale, ::scale], y, atol=1e-6)


# ---------------------------------------------------------------------------------------- training data


def test_patches_are_deterministic_and_grouped_by_scene_and_never_test_images(images):
    config = _config(images)
    dataset = model_spec("usrnet").dataset(config.data, seed=0)
    assert len(dataset) == 4 * 2 and all("set5" not in str(path) for path in dataset.files)
    scenes = [scene_name(dataset.files[i % 4]) for i in range(len(dataset))]
    assert [dataset.groups[i] == dataset.groups[j] for i in range(8) for j in range(8)] == \
        [scenes[i] == scenes[j] for i in range(8) for j in range(8)]
    first, again = dataset[3], dataset[3]
    assert torch.equal(first["target"], again["target"]) and torch.equal(first["kernel"], again["kernel"])
    batch = dataset.collate([dataset[i] for i in range(3)])
    assert batch.scale in (2, 3, 4) and batch.target.shape == (3, 3, 36, 36)
    assert batch.measurement.shape == (3, 3, 36 // batch.scale, 36 // batch.scale)
    assert torch.equal(batch.measurement, dataset.collate([dataset[i] for i in range(3)]).measurement)
    assert {dataset.collate([dataset[i]]).scale for i in range(len(dataset))} <= {2, 3, 4}


@pytest.mark.parametrize("override, message", [
    ("data.image_size=40", "multiple of every scale"),
    ("data.image_size=24", "25x25"),
    ("data.source=synthetic", "trains on images"),
    ("data.sr.max_noise_level=2", "max_noise_level"),
    ("data.sr.patches_per_image=0", "patches_per_image"),
])
def test_bad_super_resolution_settings_name_the_setting(images, override, message):
    with pytest.raises(ValueError, match=message):
        _config(images, override)


def test_patches_larger_than_an_image_are_refused(images):
    config = _config(images, "data.image_size=72", "data.sr.scales=[2,3]")
    with pytest.raises(ValueError, match="do not fit into"):
        model_spec("usrnet").dataset(config.data)


# ------------------------------------------------------------------------- train, prune, fine-tune, sr


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("usrnet_run")
    assert main(["train", "--model", "usrnet", "--data", str(images), "--image-size", "36", "--batch-size", "2",
                 "--steps", "2", "--out", str(out), "--no-progress", "data.sr.patches_per_image=2",
                 "data.val_fraction=0.34", "model.kwargs=" + json.dumps(TINY)]) == 0
    return out / "checkpoint.pt"


def test_training_validates_with_the_super_resolution_metrics(trained):
    history = torch.load(trained, weights_only=True)["history"]
    assert np.isfinite(history[-1]["val_psnr"]) and 0 <= history[-1]["val_ssim"] <= 1


def test_pruning_keeps_the_hyper_network_and_the_image_channels(trained, tmp_path, capsys):
    out = tmp_path / "pruned.pt"
    assert main(["prune", "--model", str(trained), "--ratio", "0.5", "--round-to", "4", "--image-size", "48",
                 "--out", str(out)]) == 0
    from mbdlfast.training.checkpoint import load_checkpoint

    dense, pruned = load_checkpoint(trained).model, load_checkpoint(out).model
    for name, parameter in dense.named_parameters():
        if name.startswith("hyper.") or name in ("prior.head.weight", "prior.tail.weight"):
            other = dict(pruned.named_parameters())[name]
            assert other.shape[0 if name != "prior.head.weight" else 1] == parameter.shape[
                0 if name != "prior.head.weight" else 1]
        if name.startswith("hyper."):
            assert torch.equal(dict(pruned.named_parameters())[name], parameter)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in dense.parameters())
    y = torch.rand(1, 3, 12, 12)
    physics = BlurDownsample(gaussian_kernel(9, 1.0).float(), 3, 0.01)
    assert pruned(y, physics).shape == dense(y, physics).shape == (1, 3, 36, 36)
    assert "pruned" in capsys.readouterr().out


def test_school_finetuning_of_usrnet_and_self_supervised_refused(trained, images, tmp_path, capsys):
    assert main(["finetune", "--student", str(trained), "--teacher", str(trained), "--mode", "school",
                 "--data", str(images), "--image-size", "36", "--batch-size", "2", "--steps", "1",
                 "--out", str(tmp_path / "ft"), "--no-progress", "data.sr.patches_per_image=1",
                 "data.val_fraction=0"]) == 0
    assert (tmp_path / "ft" / "checkpoint.pt").is_file()
    assert main(["finetune", "--student", str(trained), "--mode", "self_supervised", "--data", str(images),
                 "--image-size", "36", "--steps", "1", "--out", str(tmp_path / "ssl")]) == 2
    assert "applies to the MRI models" in capsys.readouterr().err


def test_sr_command_simulates_restores_and_scores(trained, images, tmp_path):
    out = tmp_path / "sr"
    assert main(["sr", "--model", str(trained), "--input", str(images / "set5"), "--simulate", "--scale", "3",
                 "--kernel", "usrnet:6", "--noise-level", "0.01", "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "bird.json").read_text())
    assert set(record["metrics"]) == {"bicubic", "usrnet"} and record["settings"]["scale"] == 3
    restored = read_rgb(out / "bird_sr.png")
    assert restored.shape == (3, 54, 60) and read_rgb(out / "bird_lr.png").shape == (3, 18, 20)
    assert (out / "bird.png").is_file()
    # the low-resolution output restored again, as a user with a real LR image would
    assert main(["sr", "--model", str(trained), "--input", str(out / "bird_lr.png"), "--scale", "3",
                 "--kernel", "usrnet:6", "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    assert read_rgb(tmp_path / "again" / "bird_lr_sr.png").shape == (3, 54, 60)


@pytest.mark.parametrize("arguments, message", [
    (["--kernel", "usrnet:13"], "usrnet:N takes N in 1..12"),
    (["--kernel", "gaussian:a"], "takes numbers"),
    (["--kernel", "nothing.npy"], "neither usrnet:N"),
    (["--scale", "0"], "scale"),
    (["--noise-level", "-1"], "noise_level"),
])
def test_sr_command_names_bad_arguments(trained, images, tmp_path, capsys, arguments, message):
    assert main(["sr", "--model", str(trained), "--input", str(images / "set5"), "--out", str(tmp_path / "o"),
                 "--no-progress", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sr_refuses_an_mri_model_and_recon_refuses_usrnet(trained, images, tmp_path, capsys):
    assert main(["sr", "--model", "deq", "--input", str(images / "set5"), "--out", str(tmp_path / "o")]) == 2
    assert "super-resolution needs one of" in capsys.readouterr().err
    brain = Path(__file__).resolve().parents[2] / "shared/data/mri/sigpy-mri-tutorial/cartesian_ksp.npy"
    assert main(["recon", "--model", str(trained), "--data", str(brain), "--out", str(tmp_path / "r")]) == 2
    assert "super-resolve images with 'mbdlfast sr'" in capsys.readouterr().err


def test_kernel_names(tmp_path):
    assert torch.equal(resolve_kernel("usrnet:1"), usrnet_test_kernels()[0])
    assert torch.equal(resolve_kernel("gaussian:1.6"), gaussian_kernel(25, 1.6))
    assert torch.equal(resolve_kernel("gaussian:2,1,30"), gaussian_kernel(25, (2.0, 1.0), 30.0))
    stack = torch.stack([gaussian_kernel(7, 1.0), gaussian_kernel(7, 2.0)]).numpy()
    np.save(tmp_path / "k.npy", stack)
    assert torch.allclose(resolve_kernel(str(tmp_path / "k.npy"), 1), gaussian_kernel(7, 2.0))
    with pytest.raises(ValueError, match="kernel_index"):
        resolve_kernel(str(tmp_path / "k.npy"), 2)


def test_bench_sr_quick_writes_table_4(tmp_path, shared_data):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_sr

        result = bench_sr.main(["--quick", "--images", str(shared_data / "images"), "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert (tmp_path / "sr_cpu.json").is_file() and (tmp_path / "sr_cpu.png").is_file()
    rows = result["rows"]
    assert {(r["scale"], r["model"], r["ratio"]) for r in rows} == {
        (s, "bicubic", None) for s in (2, 3)} | {(s, "usrnet", ratio) for s in (2, 3) for ratio in (0.0, 0.5)}
    pruned = [r for r in rows if r["ratio"] == 0.5]
    assert all(r["tuning"] == "school" and r["params"] > 0 and r["speedup"] > 0 for r in pruned)
    assert {"device", "torch", "git_sha", "rows"} <= set(result)
