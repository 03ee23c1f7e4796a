"""USRNet: the official architecture's size, the loader of the official checkpoint layout (on a state
dict written here with the official key names and shapes), the unfolding's shapes over scales, odd
sizes and per-sample kernels and noise levels, gradients to every part, and errors naming the argument."""
from __future__ import annotations

import pytest
import torch

import mbdlfast.ops as ops
from devices import TRITON_DEVICE
from mbdlfast.models import ResUNet, USRNet
from mbdlfast.physics import BlurDownsample, blur_kernels

OFFICIAL_PARAMETERS = 17_016_016  # USRNet(n_iter=8, h_nc=64, nc=[64, 128, 256, 512], nb=2), the official usrnet.pth


def official_state_dict(iterations, channels, features, blocks, hyper, seed=0):
    """Random tensors under the official repository's key names and shapes (models/network_usrnet.py:
    B.sequential flattens each level's residual blocks and its sampling convolution into one list)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {"p.m_head.weight": (features[0], channels + 1, 3, 3), "p.m_tail.weight": (channels, features[0], 3, 3)}

    def residual(prefix, index, width):
        for conv in (0, 2):
            shapes[f"{prefix}.{index}.res.{conv}.weight"] = (width, width, 3, 3)

    for level in (1, 2, 3):
        low, high = features[level - 1], features[level]
        for index in range(blocks):
            residual(f"p.m_down{level}", index, low)
            residual(f"p.m_up{level}", index + 1, low)
        shapes[f"p.m_down{level}.{blocks}.weight"] = (high, low, 2, 2)
        shapes[f"p.m_up{level}.0.weight"] = (high, low, 2, 2)
    for index in range(blocks):
        residual("p.m_body", index, features[3])
    for layer, (out, inp) in zip((0, 2, 4), ((hyper, 2), (hyper, hyper), (2 * iterations, hyper))):
        shapes[f"h.mlp.{layer}.weight"], shapes[f"h.mlp.{layer}.bias"] = (out, inp, 1, 1), (out,)
    return {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def physics(scale=2, batch=2, noise=0.01, per_sample=False):
    kernels = [blur_kernels.gaussian_kernel(7, 1.2), blur_kernels.gaussian_kernel(7, (2.0, 0.8), angle=30.0)]
    kernel = torch.stack(kernels[:batch]) if per_sample else kernels[0]
    return BlurDownsample(kernel.float(), scale, noise_level=noise)


def test_the_default_is_the_official_architecture():
    model = USRNet()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS
    assert sum(p.numel() for p in USRNet.from_official(official_state_dict(8, 3, (64, 128, 256, 512), 2, 64))
               .parameters()) == OFFICIAL_PARAMETERS


@pytest.mark.parametrize("config", [(8, 3, (16, 32, 64, 128), 2, 32), (6, 1, (8, 16, 16, 24), 1, 16)])
def test_from_official_puts_every_tensor_in_its_place(config):
    iterations, channels, features, blocks, hyper = config
    state = official_state_dict(*config)
    model = USRNet.from_official(state)
    assert model.iterations == iterations and model.prior.tail.out_channels == channels
    assert len(model.prior.body) == blocks and model.hyper.mlp[0].out_channels == hyper
    ours = model.state_dict()
    assert len(ours) == len(state)
    assert torch.equal(ours["prior.down1.0.body.2.weight"], state["p.m_down1.0.res.2.weight"])
    assert torch.equal(ours[f"prior.down3.{blocks}.weight"], state[f"p.m_down3.{blocks}.weight"])
    assert torch.equal(ours["prior.up1.0.weight"], state["p.m_up1.0.weight"])
    assert torch.equal(ours["hyper.mlp.4.bias"], state["h.mlp.4.bias"])
    y = torch.rand(1, channels, 9, 7)
    blur = BlurDownsample(blur_kernels.gaussian_kernel(5, 1.0).float(), 3)
    assert model(y, blur).shape == (1, channels, 27, 21)


def test_from_official_refuses_other_layouts_naming_what_is_wrong():
    state = official_state_dict(4, 3, (8, 16, 16, 24), 1, 16)
    with pytest.raises(ValueError, match="state_dict: expected the official USRNet layout"):
        USRNet.from_official({"prior.head.weight": state["p.m_head.weight"]})
    state["p.m_extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected \\['p.m_extra.weight'\\]"):
        USRNet.from_official(state)
    del state["p.m_extra.weight"]
    state.pop("p.m_up1.1.res.0.weight")
    with pytest.raises(ValueError, match="missing \\['p.m_up1.1.res.0.weight'\\], unexpected \\[\\]"):
        USRNet.from_official(state)
    del state["p.m_tail.weight"]
    with pytest.raises(ValueError, match="official USRNet layout .*; it lacks \\['p.m_tail.weight'\\]"):
        USRNet.from_official(state)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_the_unfolding_upsamples_any_size_with_per_sample_kernels_and_noise(scale):
    model = USRNet(iterations=3, channels=3, features=(4, 8, 8, 8), blocks=1, hyper_features=8)
    blur = physics(scale, per_sample=True, noise=torch.tensor([0.0, 0.03]))
    y = torch.rand(2, 3, 9, 7)
    out = model(y, blur)
    assert out.shape == (2, 3, 9 * scale, 7 * scale) and torch.isfinite(out).all()
    weights = model.hyper(torch.tensor([0.0, 0.03]), torch.tensor([float(scale)] * 2))
    assert weights.shape == (2, 6) and bool((weights > 0).all())


def test_gradients_reach_the_prior_and_the_hyper_network():
    model = USRNet(iterations=2, channels=1, features=(4, 4, 8, 8), blocks=1, hyper_features=8)
    model(torch.rand(2, 1, 8, 8), physics(2, noise=0.02)).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_the_data_steps_run_on_the_dispatched_backend():
    """The same network through the Triton data step (interpreted on CPU here) as through torch's."""
    torch.manual_seed(0)
    model = USRNet(iterations=2, channels=3, features=(4, 8, 8, 8), blocks=1, hyper_features=8).to(TRITON_DEVICE)
    blur = physics(3, per_sample=True).to(TRITON_DEVICE)
    y = torch.rand(2, 3, 6, 5, device=TRITON_DEVICE)
    with torch.no_grad():
        expected = model(y, blur)
        with ops.use_backend("triton"):
            fused = model(y, blur)
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_named():
    model = USRNet(iterations=1, channels=3, features=(4, 4, 4, 4), blocks=1, hyper_features=4)
    with pytest.raises(TypeError, match="physics: expected a BlurDownsample"):
        model(torch.rand(1, 3, 8, 8), object())
    with pytest.raises(ValueError, match="y: expected \\(B,3,h,w\\) images"):
        model(torch.rand(1, 1, 8, 8), physics(2, batch=1))
    with pytest.raises(ValueError, match="noise_level: 2 values for a batch of 3"):
        model(torch.rand(3, 3, 8, 8), physics(2, noise=torch.tensor([0.0, 0.1])))
    with pytest.raises(ValueError, match="noise_level: expected a finite number >= 0"):
        BlurDownsample(torch.ones(3, 3), 2, noise_level=-0.1)
    with pytest.raises(ValueError, match="ResUNet: expected four feature counts"):
        ResUNet(features=(4, 8, 16))
