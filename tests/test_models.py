"""mbdlfast.models: parameter counts, fastMRI parity, shapes/dtypes, complex<->channels, MoDL and DEQ."""
from __future__ import annotations

import pytest
import torch

from references import reference_module

fastmri_models = reference_module("fastmri.models")

from mbdlfast.models import (  # noqa: E402
    DEQ,
    EDSR,
    MoDL,
    ComplexAdapter,
    DnCNN,
    NormUnet,
    Unet,
    VarNet,
    channels_to_complex,
    complex_to_channels,
)
from mbdlfast.models.varnet import center_band  # noqa: E402
from mbdlfast.ops.fft import fft2c, ifft2c  # noqa: E402
from mbdlfast.physics.sense import SenseOperator  # noqa: E402


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def crandn(*shape, dtype=torch.complex64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


def line_mask(width: int, every: int, center: int, offset: int = 0) -> torch.Tensor:
    """Equispaced 1D mask with a fully sampled centre of ``center`` columns."""
    mask = torch.zeros(width, dtype=torch.bool)
    mask[offset::every] = True
    mask[width // 2 - center // 2: width // 2 - center // 2 + center] = True
    return mask


# ---------------------------------------------------------------- complex <-> 2 channels

def test_channels_round_trip_and_layout():
    x = crandn(3, 7, 5)
    channels = complex_to_channels(x)
    assert channels.shape == (3, 2, 7, 5) and channels.dtype == torch.float32
    assert torch.equal(channels[:, 0], x.real) and torch.equal(channels[:, 1], x.imag)
    assert torch.equal(channels_to_complex(channels), x)
    assert torch.equal(channels_to_complex(channels * 2), 2 * x)


def test_channels_reject_bad_input():
    with pytest.raises(TypeError, match="x"):
        complex_to_channels(torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="x"):
        complex_to_channels(crandn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="x"):
        channels_to_complex(torch.randn(2, 3, 4, 4))


# ---------------------------------------------------------------- EDSR, DnCNN

def test_edsr_parameter_count_is_the_published_prior():
    assert num_params(EDSR(n_resblocks=13, n_feats=64, in_channels=2)) == 999_426


def test_edsr_and_dncnn_shapes_real_and_complex():
    nets = (EDSR(n_resblocks=2, n_feats=8), DnCNN(depth=4, channels=8), DnCNN(depth=3, channels=8, batch_norm=False))
    for net in nets:
        assert net(torch.randn(2, 2, 17, 23)).shape == (2, 2, 17, 23)
        out = ComplexAdapter(net)(crandn(2, 17, 23))
        assert out.shape == (2, 17, 23) and out.dtype == torch.complex64


def test_dncnn_is_residual_and_counts():
    net = DnCNN(depth=5, channels=8, batch_norm=False)
    torch.nn.init.zeros_(net.layers[-1].weight)
    x = torch.randn(2, 2, 9, 11)
    assert torch.equal(net(x), x)
    # 2->8 conv with bias, 3 x (8->8 with bias), 8->2 without bias
    assert num_params(net) == (2 * 8 * 9 + 8) + 3 * (8 * 8 * 9 + 8) + 8 * 2 * 9
    with_bn = DnCNN(depth=5, channels=8, batch_norm=True)
    assert num_params(with_bn) == (2 * 8 * 9 + 8) + 3 * (8 * 8 * 9 + 2 * 8) + 8 * 2 * 9


# ---------------------------------------------------------------- U-Net, NormUnet

@pytest.mark.parametrize("shape", [(16, 24), (17, 23)])
def test_unet_matches_fastmri(shape):
    reference = fastmri_models.Unet(3, 2, chans=4, num_pool_layers=3, drop_prob=0.0).eval()
    ours = Unet(3, 2, chans=4, num_pool_layers=3).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, *shape)
    out = ours(x)
    assert out.shape == (2, 2, *shape)
    torch.testing.assert_close(out, reference(x), rtol=1e-6, atol=1e-6)


def test_normunet_matches_fastmri_on_complex_images():
    reference = fastmri_models.varnet.NormUnet(4, 2).double()
    ours = NormUnet(4, 2).double()
    ours.load_state_dict(reference.state_dict())
    x = crandn(3, 20, 27, dtype=torch.complex128)
    expected = torch.view_as_complex(reference(torch.view_as_real(x).unsqueeze(1))[:, 0].contiguous())
    out = ours(x)
    assert out.dtype == torch.complex128 and out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- VarNet

@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(num_cascades=8, chans=18, pools=4, estimate_sens=False), 19_634_712),
        (dict(num_cascades=8, chans=18, pools=4, sens_chans=8, sens_pools=4, estimate_sens=True), 20_119_610),
        (dict(num_cascades=12, chans=18, pools=4, estimate_sens=True), 29_936_966),
    ],
)
def test_varnet_parameter_counts(kwargs, expected):
    with torch.device("meta"):
        assert num_params(VarNet(**kwargs)) == expected


def small_fastmri_varnet(dtype=torch.float32):
    reference = fastmri_models.VarNet(num_cascades=2, chans=4, pools=2, sens_chans=4, sens_pools=2)
    with torch.no_grad():  # non-trivial dc weights so the soft DC term matters
        for cascade in reference.cascades:
            cascade.dc_weight.uniform_(0.5, 1.5)
    return reference.to(dtype)


def sampling(y: torch.Tensor, mask: torch.Tensor) -> SenseOperator:
    """The sampling of k-space ``y`` as an operator without maps (what E2E-VarNet takes)."""
    return SenseOperator(None, mask, kspace_shape=tuple(y.shape[1:]))


def undersampled_kspace(batch, coils, height, width, masks, dtype=torch.complex64):
    kspace = crandn(batch, coils, height, width, dtype=dtype)
    return kspace * masks.reshape(-1, 1, 1, width)


@pytest.mark.parametrize("coils, height, width, per_sample_mask", [(8, 32, 24, False), (3, 21, 25, True)])
def test_e2e_varnet_matches_fastmri(coils, height, width, per_sample_mask):
    reference = small_fastmri_varnet()
    model = VarNet.from_fastmri(reference.state_dict())
    assert model.estimate_sens and len(model.cascades) == 2
    masks = torch.stack([line_mask(width, 3, 6), line_mask(width, 4, 4, offset=1)]) if per_sample_mask \
        else line_mask(width, 3, 6).expand(2, width)
    y = undersampled_kspace(2, coils, height, width, masks)
    fastmri_mask = masks.reshape(2, 1, 1, width, 1)
    mask = masks if per_sample_mask else masks[0]
    with torch.no_grad():
        expected = reference(torch.view_as_real(y), fastmri_mask)
        outputs = [model(y, sampling(y, given_mask)) for given_mask in (mask, fastmri_mask.float())]
    for out in outputs:
        assert out.shape == (2, height, width) and out.dtype == torch.float32
        assert float((out - expected).norm() / expected.norm()) < 1e-5


def fastmri_centre_count(mask: torch.Tensor) -> torch.Tensor:
    """fastMRI's own centre-band width for (B,W) masks."""
    reference = fastmri_models.varnet.SensitivityModel(chans=4, num_pools=2)
    return reference.get_pad_and_num_low_freqs(mask.reshape(len(mask), 1, 1, -1, 1))[1]


def test_centre_band_equals_fastmris_except_where_a_side_has_no_unsampled_column():
    """The documented difference: fastMRI's argmin rule finds no unsampled column on a fully sampled
    side and returns a 1-column band; ours keeps the whole sampled run there."""
    width = 24
    usual = torch.stack([line_mask(width, 3, 6), line_mask(width, 4, 4, offset=1), line_mask(width, 2, 1)])
    assert torch.equal(center_band(usual)[1], fastmri_centre_count(usual))
    full = torch.ones(2, width, dtype=torch.bool)
    one_sided = line_mask(width, 4, 6).expand(1, width).clone()
    one_sided[:, width // 2:] = True  # the right half fully sampled; the left keeps a run of 4
    assert fastmri_centre_count(full).tolist() == [1, 1] and center_band(full)[1].tolist() == [width, width]
    assert fastmri_centre_count(one_sided).tolist() == [1] and center_band(one_sided)[1].tolist() == [8]


def test_e2e_varnet_matches_fastmri_on_a_fully_sampled_mask_given_its_centre_width():
    reference = small_fastmri_varnet()
    model = VarNet.from_fastmri(reference.state_dict())
    y = undersampled_kspace(2, 3, 16, 16, torch.ones(2, 16, dtype=torch.bool))
    fastmri_mask = torch.ones(2, 1, 1, 16, 1, dtype=torch.bool)
    with torch.no_grad():
        expected = reference(torch.view_as_real(y), fastmri_mask)
        ours = model(y, sampling(y, torch.ones(16, dtype=torch.bool)), num_low_frequencies=1)
        default = model(y, sampling(y, torch.ones(16, dtype=torch.bool)))
    assert float((ours - expected).norm() / expected.norm()) < 1e-5
    assert float((default - expected).norm() / expected.norm()) > 1e-3  # the whole k-space feeds the maps


def test_e2e_varnet_gradients_match_fastmri():
    reference = small_fastmri_varnet()
    model = VarNet.from_fastmri(reference.state_dict())
    mask = line_mask(16, 3, 4)
    y = undersampled_kspace(2, 3, 16, 16, mask.expand(2, 16))
    target = torch.rand(2, 16, 16)
    fastmri_mask = mask.reshape(1, 1, 1, 16, 1).expand(2, 1, 1, 16, 1)
    (reference(torch.view_as_real(y), fastmri_mask) - target).square().sum().backward()
    (model(y, sampling(y, mask)) - target).square().sum().backward()
    expected = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        grad, ref_grad = p.grad, expected[name].grad
        assert float((grad - ref_grad).norm() / ref_grad.norm().clamp_min(1e-6)) < 1e-4, name


def test_e2e_varnet_matches_fastmri_with_num_low_frequencies():
    reference = small_fastmri_varnet()
    model = VarNet.from_fastmri(reference.state_dict(), output="rss")
    mask = line_mask(16, 3, 8)
    y = undersampled_kspace(2, 4, 16, 16, mask.expand(2, 16))
    fastmri_mask = mask.reshape(1, 1, 1, 16, 1).expand(2, 1, 1, 16, 1)
    with torch.no_grad():
        outputs = []
        for low in (2, 6):
            expected = reference(torch.view_as_real(y), fastmri_mask, num_low_frequencies=low)
            outputs.append(model(y, sampling(y, mask), low))
            assert float((outputs[-1] - expected).norm() / expected.norm()) < 1e-5
        per_sample = model(y, sampling(y, mask), torch.tensor([2, 6]))
    assert not torch.allclose(outputs[0], outputs[1])
    torch.testing.assert_close(per_sample, torch.stack([outputs[0][0], outputs[1][1]]))


def test_varnet_with_given_maps_matches_fastmri_cascades():
    reference = small_fastmri_varnet(torch.float64)
    model = VarNet(num_cascades=2, chans=4, pools=2, estimate_sens=False).double()
    cascades_only = {k: v for k, v in reference.state_dict().items() if k.startswith("cascades.")}
    model.load_state_dict(cascades_only)
    mask = line_mask(12, 3, 4)
    y = undersampled_kspace(2, 4, 16, 12, mask.expand(2, 12), dtype=torch.complex128)
    maps = crandn(2, 4, 16, 12, dtype=torch.complex128)
    maps = maps / maps.abs().square().sum(dim=1, keepdim=True).sqrt()

    kspace = torch.view_as_real(y)
    for cascade in reference.cascades:
        kspace = cascade(kspace, torch.view_as_real(y), mask.reshape(1, 1, 1, 12, 1), torch.view_as_real(maps))
    expected_kspace = torch.view_as_complex(kspace)
    torch.testing.assert_close(model(y, SenseOperator(maps, mask)), ifft2c(expected_kspace).abs().square().sum(1).sqrt(),
                               rtol=1e-10, atol=1e-12)

    model.output = "kspace"
    torch.testing.assert_close(model(y, SenseOperator(maps, mask)), expected_kspace, rtol=1e-10, atol=1e-12)
    model.output = "image"
    image = model(y, SenseOperator(maps, mask))
    assert image.shape == (2, 16, 12) and image.dtype == torch.complex128
    torch.testing.assert_close(image, (maps.conj() * ifft2c(expected_kspace)).sum(1), rtol=1e-10, atol=1e-12)


def test_varnet_shared_maps_and_bad_input():
    model = VarNet(num_cascades=1, chans=2, pools=1, estimate_sens=False, output="image")
    mask = line_mask(12, 2, 2)
    y = undersampled_kspace(3, 2, 10, 12, mask.expand(3, 12))
    maps = crandn(2, 10, 12)
    out = model(y, SenseOperator(maps, mask))
    assert out.shape == (3, 10, 12) and out.dtype == torch.complex64
    torch.testing.assert_close(out, model(y, SenseOperator(maps.expand(3, 2, 10, 12), mask)))
    with pytest.raises(ValueError, match="maps: this SenseOperator describes only the sampling"):
        model(y, sampling(y, mask))
    with pytest.raises(ValueError, match="masked_kspace: expected shape"):
        model(y, SenseOperator(crandn(3, 10, 12), mask))
    with pytest.raises(ValueError, match="physics: expected a SenseOperator on full k-space"):
        model(y, SenseOperator(maps, mask, compact=True))
    with pytest.raises(TypeError, match="masked_kspace"):
        model(torch.view_as_real(y), SenseOperator(maps, mask))
    with pytest.raises(ValueError, match="output"):
        VarNet(output="magnitude")
    with pytest.raises(ValueError, match="state_dict"):
        VarNet.from_fastmri({})


def test_e2e_varnet_estimates_its_maps_whatever_the_operator_carries():
    model = VarNet(num_cascades=1, chans=2, pools=1, sens_chans=2, sens_pools=1, output="image")
    mask = line_mask(12, 2, 4)
    y = undersampled_kspace(2, 3, 10, 12, mask.expand(2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(y, SenseOperator(crandn(3, 10, 12), mask)), model(y, sampling(y, mask)))


def test_varnet_takes_2d_masks():
    """A 2D mask of whole columns gives the line mask's result (given maps); E2E-VarNet on a genuine
    2D pattern estimates its maps from the fully sampled centre square only."""
    from mbdlfast.models.varnet import centre_square

    torch.manual_seed(0)
    given = VarNet(num_cascades=1, chans=2, pools=1, estimate_sens=False, output="image")
    mask = line_mask(12, 2, 2)
    y = undersampled_kspace(2, 2, 10, 12, mask.expand(2, 12))
    maps = crandn(2, 10, 12)
    columns_2d = mask.expand(10, 12)
    torch.testing.assert_close(given(y, SenseOperator(maps, columns_2d)), given(y, SenseOperator(maps, mask)))
    torch.testing.assert_close(given(y, SenseOperator(maps, columns_2d.expand(2, 10, 12))),
                               given(y, SenseOperator(maps, mask)))
    pattern = torch.rand(10, 12) < 0.4
    pattern[3:8, 4:9] = True  # a 5x5 fully sampled centre around (5, 6)
    keep = centre_square(pattern.expand(1, 10, 12))[0]
    assert keep.sum() == 25 and bool(pattern[keep].all())
    learned = VarNet(num_cascades=1, chans=2, pools=1, sens_chans=2, sens_pools=1, output="image")
    out = learned(y * pattern, sampling(y, pattern))
    assert out.shape == (2, 10, 12) and torch.isfinite(out.abs()).all()


def test_varnet_gradients_reach_every_parameter():
    model = VarNet(num_cascades=2, chans=2, pools=1, sens_chans=2, sens_pools=1)
    mask = line_mask(16, 2, 4)
    y = undersampled_kspace(2, 3, 16, 16, mask.expand(2, 16))
    model(y, sampling(y, mask)).sum().backward()
    # The first cascade starts at k = y, where the soft DC term M(k - y) and its dc_weight gradient vanish.
    trained = {n: p for n, p in model.named_parameters() if n != "cascades.0.dc_weight"}
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in trained.values())


# ---------------------------------------------------------------- MoDL

def sense_problem(batch=2, coils=3, height=6, width=5, dtype=torch.complex64):
    maps = crandn(batch, coils, height, width, dtype=dtype)
    maps = maps / maps.abs().square().sum(dim=1, keepdim=True).sqrt()  # RSS = 1: ||A^H A|| <= 1
    mask = torch.zeros(width, dtype=torch.bool)
    mask[::2] = True
    y = fft2c(maps * crandn(batch, 1, height, width, dtype=dtype)) * mask
    return y, maps, mask


class Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_modl_one_iteration_with_zero_denoiser_is_regularised_sense():
    y, maps, mask = sense_problem(dtype=torch.complex128)
    lam = 0.3
    model = MoDL(denoiser=Zero(), num_iter=1, cg_iter=60, lam=lam, cg_tol=1e-12).double()
    out = model(y, SenseOperator(maps, mask))
    # Dense (A^H A + lam I)^{-1} A^H y per sample, from the explicit matrix of A.
    height, width = y.shape[-2:]
    eye = torch.eye(height * width, dtype=torch.complex128).reshape(-1, height, width)
    for b in range(y.shape[0]):
        A = (fft2c(maps[b] * eye[:, None]) * mask).reshape(height * width, -1).T
        x = torch.linalg.solve(A.conj().T @ A + lam * torch.eye(height * width), A.conj().T @ y[b].reshape(-1))
        torch.testing.assert_close(out[b].reshape(-1), x, rtol=1e-9, atol=1e-9)


def test_modl_forward_and_gradients():
    y, maps, mask = sense_problem(height=12, width=10)
    model = MoDL(denoiser=ComplexAdapter(DnCNN(depth=3, channels=8)), num_iter=2, cg_iter=4)
    out = model(y, SenseOperator(maps, mask))
    assert out.shape == (2, 12, 10) and out.dtype == torch.complex64
    out.abs().square().sum().backward()
    assert model.lam.grad is not None and float(model.lam.grad.abs()) > 0
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.denoiser.parameters())
    default = MoDL()
    assert isinstance(default.denoiser.net, DnCNN) and len(default.denoiser.net.layers) == 5 + 3 * 2 + 1
    with pytest.raises(ValueError, match="lam"):
        MoDL(lam=0.0)


# ---------------------------------------------------------------- DEQ PnP


def dense_sense_matrix(maps, mask):
    """Explicit (C*H*W, H*W) matrices of A, one per batch entry."""
    height, width = maps.shape[-2:]
    eye = torch.eye(height * width, dtype=maps.dtype).reshape(-1, height, width)
    return [(fft2c(m * eye[:, None]) * mask).reshape(height * width, -1).T for m in maps]


def test_deq_with_zero_denoiser_reaches_the_analytic_fixed_point():
    # D = 0: z = (1-a)(z - g(A^H A z - A^H y))  <=>  (a I + (1-a) g A^H A) z = (1-a) g A^H y.
    y, maps, mask = sense_problem(dtype=torch.complex128)
    alpha, gamma = 0.3, 0.8
    model = DEQ(denoiser=Zero(), alpha=alpha, gamma=gamma, solver_kwargs=dict(tol=1e-11, max_iter=200)).double()
    with torch.no_grad():
        out = model(y, SenseOperator(maps, mask))
    assert bool(model.last_info["converged"].all())
    size = y.shape[-2] * y.shape[-1]
    for b, A in enumerate(dense_sense_matrix(maps, mask)):
        lhs = alpha * torch.eye(size) + (1 - alpha) * gamma * (A.conj().T @ A)
        expected = torch.linalg.solve(lhs, (1 - alpha) * gamma * (A.conj().T @ y[b].reshape(-1)))
        torch.testing.assert_close(out[b].reshape(-1), expected, rtol=1e-8, atol=1e-9)


def test_deq_edsr_converges_and_reports_iterations():
    y, maps, mask = sense_problem(height=16, width=12)
    max_iter, tol = 50, 1e-4
    model = DEQ(denoiser=ComplexAdapter(EDSR(n_resblocks=2, n_feats=8)), solver_kwargs=dict(tol=tol, max_iter=max_iter))
    with torch.no_grad():
        out = model(y, SenseOperator(maps, mask))
        info = model.last_info
        assert out.shape == (2, 16, 12) and out.dtype == torch.complex64
        assert bool(info["converged"].all()) and int(info["sample_nstep"].max()) < max_iter
        # Check the fixed point independently of the solver's bookkeeping.
        op = SenseOperator(maps, mask)
        step = model.iteration(out, op, op.A_adjoint(y))
        assert float(((step - out).norm(dim=(-2, -1)) / step.norm(dim=(-2, -1))).max()) <= tol


@pytest.mark.parametrize("backward", ["jfb", "ift"])
def test_deq_gradients_reach_alpha_gamma_and_denoiser(backward):
    y, maps, mask = sense_problem(height=8, width=8)
    model = DEQ(denoiser=ComplexAdapter(EDSR(n_resblocks=1, n_feats=4)), backward=backward,
                solver_kwargs=dict(tol=1e-5))
    model(y, SenseOperator(maps, mask)).abs().square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_deq_default_prior_is_the_published_edsr():
    model = DEQ()
    assert isinstance(model.denoiser.net, EDSR) and num_params(model.denoiser) == 999_426
    assert model.solver_kwargs == dict(m=5, lam=1e-4, beta=1.0, tol=1e-3, max_iter=100, weights="real")
