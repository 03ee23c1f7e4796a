"""GAN priors (issue 21 item 2): the DCGAN, training on image crops, compressed sensing and inpainting
by inverting the generator with the mean-squared and median-of-means objectives, corrupted
measurements, and IMP on the generator's weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mbdlfast.gan import (
    GaussianMeasurements, ImageCrops, PixelMask, corrupt_measurements, generator_imp, invert_generator,
    median_of_means, per_pixel_error, train_gan,
)
from mbdlfast.models import DCGANDiscriminator, DCGANGenerator
from mbdlfast.models.dcgan import init_dcgan_weights
from mbdlfast.prune.masking import apply_masks, current_masks, global_magnitude_masks, prunable_weights


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    generator, critic = DCGANGenerator(latent_dim=8, features=4, image_size=16), DCGANDiscriminator(features=4,
                                                                                                  image_size=16)
    init_dcgan_weights(generator)
    init_dcgan_weights(critic)
    return generator, critic


@pytest.fixture(scope="module")
def crops(shared_data):
    files = sorted((shared_data / "images" / "set14").glob("*.png"))[:3]
    return ImageCrops(files, size=16, length=32, seed=0)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_dcgan_shapes_and_range(size):
    generator, critic = DCGANGenerator(latent_dim=5, features=4, image_size=size), DCGANDiscriminator(
        features=4, image_size=size)
    with torch.no_grad():
        images = generator(torch.randn(2, 5))
    assert images.shape == (2, 3, size, size) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert critic(images).shape == (2,)
    with pytest.raises(ValueError, match="latent codes"):
        generator(torch.randn(2, 6))


def test_the_shipped_size_fits_in_ten_megabytes():
    generator, critic = DCGANGenerator(), DCGANDiscriminator()
    assert 4 * sum(p.numel() for module in (generator, critic) for p in module.parameters()) < 10e6
    with pytest.raises(ValueError, match="4·2\\^k"):
        DCGANGenerator(image_size=48)


def test_crops_are_seeded_and_in_range(crops, shared_data):
    first, again = crops[5], crops[5]
    assert torch.equal(first, again) and first.shape == (3, 16, 16)
    assert 0 <= float(first.min()) and float(first.max()) <= 1
    assert not torch.equal(crops[5], crops[6])
    with pytest.raises(ValueError, match="no images to crop"):
        ImageCrops([], size=16)
    small = ImageCrops([shared_data / "images" / "set5" / "bird.png"], size=64, zoom=(0.1, 0.2), length=2)
    assert small[0].shape == (3, 64, 64)  # the zoom is raised where the image would get smaller than a crop
    with pytest.raises(ValueError, match="zoom"):
        ImageCrops([shared_data / "images" / "set5" / "bird.png"], size=8, zoom=(0.5, 0.2))


def test_training_keeps_pruned_generator_weights_at_zero(crops):
    generator, critic = _tiny()
    masks = global_magnitude_masks(generator, 0.5)
    apply_masks(generator, masks)
    history = train_gan(generator, critic, crops, steps=3, batch_size=4)
    assert len(history) == 3 and all(torch.isfinite(torch.tensor([h["loss_d"], h["loss_g"]])).all() for h in history)
    for name, layer in prunable_weights(generator).items():
        assert torch.equal(layer.weight[masks[name] == 0], torch.zeros(int((masks[name] == 0).sum())))


def test_measurement_operators_and_their_errors():
    measure = GaussianMeasurements(20, (3, 4, 4), seed=1)
    assert measure(torch.rand(2, 3, 4, 4)).shape == (2, 20)
    assert torch.equal(measure.matrix, GaussianMeasurements(20, (3, 4, 4), seed=1).matrix)
    with pytest.raises(ValueError, match="at most n"):
        GaussianMeasurements(49, (3, 4, 4))
    mask = (torch.arange(16).reshape(4, 4) % 3 == 0).float()
    images = torch.rand(2, 3, 4, 4)
    kept = PixelMask(mask)(images)
    assert kept.shape == (2, 3 * int(mask.sum())) and torch.equal(kept[0, :int(mask.sum())], images[0, 0][mask == 1])
    with pytest.raises(ValueError, match="keeps no pixel"):
        PixelMask(torch.zeros(4, 4))
    y = torch.randn(2, 20)
    corrupted, indices = corrupt_measurements(y, 3, seed=0)
    changed = (corrupted != y).sum(dim=1)
    assert changed.tolist() == [3, 3] and indices.shape == (2, 3)
    for bad in (20, -1, 2.5):
        with pytest.raises(ValueError, match="corrupted: expected 0 <= corrupted < the 20 measurements"):
            corrupt_measurements(y, bad)


def test_median_of_means_ignores_a_few_outliers():
    residual = torch.full((1, 100), 0.01)
    residual[0, :3] = 100.0
    generator = torch.Generator().manual_seed(0)
    assert float(median_of_means(residual, 10, generator)) == pytest.approx(1e-4, rel=1e-5)
    assert float(median_of_means(residual, 1, generator)) == pytest.approx(float(residual.square().mean()))
    with pytest.raises(ValueError, match="groups"):
        median_of_means(residual, 101, generator)


class _LinearGenerator(nn.Module):
    """G(z) = reshape(B z): CSGM on it is (robust) least squares, so the optimum is known."""

    latent_dim = 6

    def __init__(self):
        super().__init__()
        self.basis = nn.Linear(6, 48, bias=False)

    def forward(self, z):
        return self.basis(z).view(-1, 3, 4, 4)


def test_median_of_means_recovers_what_corrupted_measurements_spoil_for_least_squares():
    torch.manual_seed(0)
    generator = _LinearGenerator()
    truth = generator(torch.randn(2, 6)).detach()
    measure = GaussianMeasurements(40, (3, 4, 4), seed=0)
    y, _ = corrupt_measurements(measure(truth), 2, seed=1)
    errors = {}
    for objective in ("mse", "mom"):
        result = invert_generator(generator, measure, y, iters=400, lr=0.05, objective=objective, groups=10,
                                  restarts=2, seed=0)
        errors[objective] = per_pixel_error(result.image, truth)
        assert result.z.shape == (2, 6) and len(result.history) == 400
    assert bool((errors["mom"] < 0.1 * errors["mse"]).all()) and float(errors["mom"].max()) < 1e-3
    assert all(p.requires_grad for p in generator.parameters())  # left as it was


def test_inpainting_by_inverting_the_generator():
    torch.manual_seed(1)
    generator = _LinearGenerator()
    truth = generator(torch.randn(1, 6)).detach()
    mask = (torch.rand(4, 4, generator=torch.Generator().manual_seed(2)) < 0.6).float()
    observe = PixelMask(mask)
    result = invert_generator(generator, observe, observe(truth), iters=300, lr=0.05)
    assert float(per_pixel_error(result.image, truth)) < 1e-4  # the unseen pixels too: the range fixes them


def test_generator_imp_prunes_the_generator_only_and_rewinds_to_the_pretrained_weights(crops):
    generator, critic = _tiny()
    critic_before = {k: v.clone() for k, v in critic.state_dict().items()}
    rounds, pretrained = generator_imp(generator, critic, crops, rounds=2, finetune_steps=2, batch_size=4)
    assert [r.round for r in rounds] == [0, 1, 2]
    assert [round(r.sparsity, 2) for r in rounds] == [0.0, 0.2, 0.36]
    for earlier, later in zip(rounds[1:], rounds[2:]):
        assert all(bool((later.masks[n] <= earlier.masks[n]).all()) for n in earlier.masks)
    for name, layer in prunable_weights(generator).items():
        assert torch.equal(layer.weight, pretrained[f"{name}.weight"] * rounds[2].masks[name])
    assert all(torch.equal(critic.state_dict()[k], v) for k, v in critic_before.items())
    assert all(bool(m.all()) for m in current_masks(critic).values())
    with pytest.raises(ValueError, match="dense pretrained"):
        generator_imp(generator, critic, crops, rounds=1, finetune_steps=1)


def test_gan_checkpoints_keep_a_tickets_masks(tmp_path):
    from mbdlfast.gan.checkpoint import load_gan, save_gan

    generator, critic = _tiny()
    masks = global_magnitude_masks(generator, 0.4)
    apply_masks(generator, masks)
    kwargs = {"latent_dim": 8, "features": 4, "image_size": 16}
    path = save_gan(tmp_path / "g.pt", generator, critic, kwargs, {"features": 4, "image_size": 16},
                    settings={"ticket": {"round": 1}})
    loaded = load_gan(path)
    assert loaded.sparsity == pytest.approx(0.4, abs=0.01) and "ticket of round 1" in loaded.describe()
    z = torch.randn(3, 8)
    generator.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.generator(z), generator(z))
    assert all(torch.equal(current_masks(loaded.generator)[n], masks[n]) for n in masks)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt could not be read"):
        load_gan(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an mbdlfast GAN checkpoint"):
        load_gan(tmp_path / "other.pt")


def test_gan_command_cs_inpaint_and_tickets(tiny_gan, tmp_path, shared_data, monkeypatch):
    import json

    from mbdlfast.cli import main

    monkeypatch.setenv("MBDLFAST_SHARED_DATA", str(shared_data))
    assert main(["gan", "cs", "--generator", str(tiny_gan), "--image", "set5/bird", "set5/head", "--measurements",
                 "100", "--corrupted", "3", "--iters", "3", "--out", str(tmp_path / "cs"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "cs" / "cs.json").read_text())
    assert set(record["images"]) == {"set5/bird", "set5/head"} and record["generator_sparsity"] == 0
    assert main(["gan", "inpaint", "--generator", str(tiny_gan), "--iters", "3", "--out", str(tmp_path / "in"),
                 "--no-progress"]) == 0
    assert (tmp_path / "in" / "inpaint.png").stat().st_size > 0
    assert main(["gan", "imp", "--generator", str(tiny_gan), "--images", str(shared_data / "images" / "set14"),
                 "--rounds", "2", "--finetune-steps", "1", "--batch-size", "4", "--crops", "8",
                 "--out", str(tmp_path / "imp"), "--no-progress"]) == 0
    ticket = tmp_path / "imp" / "tickets" / "round_2.pt"
    assert main(["gan", "cs", "--generator", str(ticket), "--measurements", "100", "--iters", "2", "--out",
                 str(tmp_path / "cs2"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "cs2" / "cs.json").read_text())["generator_sparsity"] == pytest.approx(0.36, abs=0.01)


@pytest.mark.parametrize("arguments, message", [
    (["cs", "--measurements", "100", "--corrupted", "100"], "corrupted: expected 0 <= corrupted < the 100"),
    (["cs", "--measurements", "5000"], "at most n"),
    (["cs", "--objective", "l1"], "objective (--objective)"),
    (["inpaint", "--hole", "1.5"], "hole (--hole)"),
    (["decode"], "action: expected one of train, cs, inpaint, imp"),
])
def test_gan_command_names_bad_input(tiny_gan, tmp_path, capsys, shared_data, monkeypatch, arguments, message):
    from mbdlfast.cli import main

    monkeypatch.setenv("MBDLFAST_SHARED_DATA", str(shared_data))
    assert main(["gan", *arguments, "--generator", str(tiny_gan), "--iters", "1", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_long_runs_hand_out_checkpoints_on_the_way(crops):
    generator, critic = _tiny()
    seen = []
    train_gan(generator, critic, crops, steps=3, batch_size=2, checkpoint_every=1,
              on_checkpoint=lambda history: seen.append(len(history)))
    assert seen == [1, 2]  # the last step is the caller's final save
