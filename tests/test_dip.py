"""Deep image priors: the hourglass and deep decoder, the tasks' forward operators, fitting, test images."""
from __future__ import annotations

import math

import pytest
import torch

from mbdlfast.dip import (
    CompressedSensingMRI,
    Denoising,
    Inpainting,
    SuperResolution,
    fit_dip,
    lanczos_kernel,
    load_image,
    load_inpainting_mask,
    make_problem,
    stack_problems,
)
from mbdlfast.models import DeepDecoder, SkipHourglass, noise_code
from mbdlfast.physics.coils import simulate_coil_maps
from mbdlfast.physics.sense import SenseOperator


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------------ networks


def test_parameter_counts_match_the_published_priors():
    assert _count(SkipHourglass(input_depth=32, out_channels=3)) == 2_217_831  # "2.2 M"
    assert _count(DeepDecoder(out_channels=3, channels=128, layers=6)) == 100_224  # "0.1 M"


def test_hourglass_shapes_and_code():
    net = SkipHourglass(input_depth=4, out_channels=2, levels=3, channels=[8, 6, 4], skip_channels=[2, 0, 2])
    code = noise_code(net, 24, 40, batch=3, seed=5)
    assert code.shape == (3, 4, 24, 40)
    assert float(code.min()) >= 0 and float(code.max()) < 0.1
    assert torch.equal(code, noise_code(net, 24, 40, batch=3, seed=5))
    out = net(code).detach()
    assert out.shape == (3, 2, 24, 40)
    assert float(out.min()) > 0 and float(out.max()) < 1  # sigmoid
    with pytest.raises(ValueError, match="height"):
        noise_code(net, 20, 40)
    with pytest.raises(ValueError, match="bottleneck"):
        noise_code(net, 8, 8)
    with pytest.raises(ValueError, match="channels"):
        SkipHourglass(levels=3, channels=[8, 8])


def test_deep_decoder_upsamples_its_code():
    net = DeepDecoder(out_channels=1, channels=8, layers=4)
    code = noise_code(net, 32, 48)
    assert code.shape == (1, 8, 4, 6)
    assert net(code).shape == (1, 1, 32, 48)
    with pytest.raises(ValueError, match="width"):
        noise_code(net, 32, 36)
    with pytest.raises(TypeError, match="net"):
        noise_code(torch.nn.Conv2d(1, 1, 1), 8, 8)


# ------------------------------------------------------------------------------------------ tasks


def test_denoising_adds_clipped_gaussian_noise_of_sigma():
    truth = torch.full((2, 3, 64, 64), 0.5)
    task = Denoising()
    y = task.measure(truth, seed=3)
    assert torch.equal(y, task.measure(truth, seed=3))
    noise = (y - truth).double()
    assert abs(float(noise.std()) - 25 / 255) < 0.005 and abs(float(noise.mean())) < 0.003
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(task.loss(truth, truth)) == 0.0
    with pytest.raises(ValueError, match="truth"):
        task.measure(torch.zeros(1, 1, 8, 8))


def test_inpainting_is_a_self_adjoint_projection():
    mask = (torch.rand(13, 17) < 0.5).float()
    task = Inpainting(mask, channels=1)
    x, y = torch.randn(2, 1, 13, 17, dtype=torch.float64), torch.randn(2, 1, 13, 17, dtype=torch.float64)
    assert torch.equal(task.A(task.A(x)), task.A(x))
    assert torch.allclose((task.A(x) * y).sum(), (x * task.A(y)).sum(), rtol=1e-12)
    assert torch.equal(task.A(x)[..., mask == 0], torch.zeros_like(x[..., mask == 0]))
    batched = Inpainting(torch.stack([mask, 1 - mask]), channels=1)
    assert torch.equal(batched.A(x)[1], x[1] * (1 - mask))
    with pytest.raises(ValueError, match="mask"):
        Inpainting(torch.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="spatial size"):
        task.A(torch.zeros(1, 1, 13, 16))


def _explicit_downsampler(size: int, factor: int) -> torch.Tensor:
    """The (size/factor, size) float64 matrix of Lanczos-2 filtering with replicate borders and stride factor."""
    support = 2
    taps = 2 * support * factor
    left = (taps - factor) // 2
    matrix = torch.zeros(size // factor, size, dtype=torch.float64)
    for row in range(size // factor):
        for tap in range(taps):
            t = (tap - (taps - 1) / 2) / factor
            value = 1.0 if t == 0 else (math.sin(math.pi * t) / (math.pi * t)) * (
                math.sin(math.pi * t / support) / (math.pi * t / support))
            column = min(max(row * factor + tap - left, 0), size - 1)
            matrix[row, column] += value
    return matrix / matrix.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("factor", [4, 8])
def test_super_resolution_downsampler_matches_an_explicit_matrix(factor):
    kernel = lanczos_kernel(factor)
    assert kernel.shape == (4 * factor,) and torch.allclose(kernel.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(kernel, kernel.flip(0))
    height, width = 5 * factor, 3 * factor
    task = SuperResolution(factor, channels=3)
    x = torch.rand(2, 3, height, width, dtype=torch.float64)
    y = task.A(x.float())
    assert y.shape == (2, 3, height // factor, width // factor)
    rows, cols = _explicit_downsampler(height, factor), _explicit_downsampler(width, factor)
    expected = rows @ x @ cols.T
    assert torch.allclose(y.double(), expected, atol=1e-5)
    assert torch.allclose(task.A(torch.full((1, 3, height, width), 0.3)), torch.tensor(0.3), atol=1e-6)
    with pytest.raises(ValueError, match="multiples of factor"):
        task.A(torch.zeros(1, 3, height + 1, width))


def _centred_fft2(x: torch.Tensor) -> torch.Tensor:
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims)


def test_mri_task_goes_through_the_sense_operator():
    height, width, coils = 12, 10, 3
    maps = simulate_coil_maps(coils, height, width, seed=1)
    mask = torch.zeros(width, dtype=torch.bool)
    mask[::2] = True
    task = CompressedSensingMRI(SenseOperator(maps, mask))
    output = torch.rand(2, 2, height, width)
    image = task.image(output)
    assert image.dtype == torch.complex64 and image.shape == (2, height, width)
    assert torch.allclose(image.real, 2 * output[:, 0] - 1) and torch.allclose(image.imag, 2 * output[:, 1] - 1)
    expected = _centred_fft2(maps.to(torch.complex128) * image.to(torch.complex128)[:, None]) * mask
    assert torch.allclose(task.A(output).to(torch.complex128), expected, atol=1e-5)
    truth = image.detach()
    y = task.measure(truth)
    assert float(task.loss(output, y)) < 1e-10
    psnr, ssim = task.score(truth, truth * 0.9)
    assert psnr.shape == (2,) and torch.isfinite(psnr).all() and float(ssim.min()) > 0.9
    with pytest.raises(TypeError, match="operator"):
        CompressedSensingMRI(maps)


def test_score_psnr_is_exact_for_a_known_error():
    truth = torch.rand(2, 3, 16, 16) * 0.5
    psnr, ssim = Denoising().score(truth, truth + 0.01)
    assert torch.allclose(psnr, torch.full((2,), 40.0), atol=1e-3)
    assert ssim.shape == (2,)


# ------------------------------------------------------------------------------------------ fitting


def _tiny_net(out_channels: int = 3) -> SkipHourglass:
    return SkipHourglass(input_depth=8, out_channels=out_channels, levels=2, channels=16, skip_channels=4)


def test_fit_dip_reduces_the_loss_and_records_history():
    torch.manual_seed(0)
    truth = torch.rand(1, 3, 1, 1) * torch.ones(1, 3, 16, 16)  # a flat colour: easy to fit
    task = Denoising()
    y = task.measure(truth)
    net = _tiny_net()
    fit = fit_dip(net, task, y, iters=40, lr=0.02, reference=truth, ema=None, seed=1)
    assert len(fit.history["loss"]) == 40 and len(fit.history["psnr"]) == 40
    assert fit.history["loss"][-1] < 0.5 * fit.history["loss"][0]
    assert fit.reconstruction.shape == truth.shape and fit.psnr is not None and fit.ssim is not None
    assert fit.snapshot is None


def test_fit_dip_snapshot_and_bad_input():
    net = _tiny_net()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    y = torch.rand(1, 3, 8, 8)
    fit = fit_dip(net, Denoising(), y, iters=2, snapshot_iter=0)
    assert all(torch.equal(fit.snapshot[k], initial[k]) for k in initial)
    with pytest.raises(ValueError, match="iters"):
        fit_dip(net, Denoising(), y, iters=0)
    with pytest.raises(ValueError, match="ema"):
        fit_dip(net, Denoising(), y, iters=1, ema=1.0)
    with pytest.raises(ValueError, match="snapshot_iter"):
        fit_dip(net, Denoising(), y, iters=1, snapshot_iter=2)


def test_fit_dip_shares_one_network_over_several_images():
    net = _tiny_net()
    truth = torch.rand(2, 3, 8, 8)
    fit = fit_dip(net, SuperResolution(4), SuperResolution(4).A(truth), iters=2, reference=truth)
    assert fit.reconstruction.shape == (2, 3, 8, 8)
    assert not torch.equal(fit.reconstruction[0], fit.reconstruction[1])  # own code per image


# ------------------------------------------------------------------------------------------ images


def test_load_known_images(shared_data):
    root = shared_data / "images"
    f16 = load_image("F16", size=64, root=root)
    assert f16.shape == (1, 3, 64, 64) and f16.dtype == torch.float32
    assert 0 <= float(f16.min()) and float(f16.max()) <= 1 and float(f16.std()) > 0.05
    assert load_image("f16", root=root).shape == (1, 3, 512, 512)
    assert load_image("set5/bird", root=root).shape == (1, 3, 288, 288)
    assert load_image("set14/bridge", size=32, root=root).shape == (1, 1, 32, 32)  # a gray image
    assert load_image(root / "set5" / "woman.png", root=root).shape == (1, 3, 320, 224)
    mask = load_inpainting_mask("kate", size=64, root=root)
    assert mask.shape == (64, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="image"):
        load_image("no_such_picture", root=root)
    with pytest.raises(ValueError, match="size"):
        load_image("F16", size=48, root=root)


def test_make_problem_for_every_task(shared_data):
    root = shared_data / "images"
    shapes = {"denoise": (1, 3, 32, 32), "inpaint": (1, 3, 32, 32), "sr4": (1, 3, 8, 8), "sr8": (1, 3, 4, 4),
              "mri": (1, 8, 32, 32)}
    for task, shape in shapes.items():
        problem = make_problem(task, "kate", size=32, root=root)
        assert problem.measurement.shape == shape, task
    mri = make_problem("mri", "F16", size=32, root=root)
    assert mri.truth.dtype == torch.complex64 and mri.task.channels == 2
    both = stack_problems([make_problem("inpaint", name, size=32, root=root) for name in ("kate", "vase")])
    assert both.task.mask.shape == (2, 32, 32) and both.truth.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="task"):
        make_problem("deblur", "F16", size=32, root=root)
