"""Pruning at initialization: exact densities, SNIP/GraSP against hand and full-Hessian references,
SynFlow without data and without layer collapse, PUN's relaxation, KL prior and side-effect freedom,
structured channel masks and bad input."""
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from mbdlfast.prune.at_init import (METHODS, RelaxedBernoulliMask, bernoulli_kl, channel_masks, prune_at_init,
                                    score_weights)
from mbdlfast.prune.masking import apply_masks, prunable_weights, sparsity

FAST = {"pun": {"steps": 3}, "synflow": {"iterations": 5, "input_shape": (1, 2, 6, 5)}}


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(6, 2, 3, padding=1))


def regression_data(batches=2):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(3, 2, 7, 5, generator=generator), torch.randn(3, 2, 7, 5, generator=generator))
            for _ in range(batches)]


def mse(model, batch):
    inputs, target = batch
    return (model(inputs) - target).square().mean()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("density", [0.1, 0.37, 1.0])
def test_every_method_keeps_exactly_the_density_and_applies_the_masks(method, density):
    net = small_net()
    total = sum(layer.weight.numel() for layer in prunable_weights(net).values())
    masks = prune_at_init(net, method, density, loss_fn=mse, batches=regression_data(), **FAST.get(method, {}))
    assert sum(int(m.sum()) for m in masks.values()) == round(density * total)
    assert sparsity(net) == pytest.approx(1 - round(density * total) / total, abs=1e-12)
    for name, layer in prunable_weights(net).items():
        assert parametrize.is_parametrized(layer, "weight")
        assert torch.all(layer.weight[masks[name] == 0] == 0)


def two_layer_net():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False)).double()


def half_squared_error(model, batch):
    inputs, target = batch
    return 0.5 * (model(inputs) - target).square().sum()


def test_snip_scores_are_the_hand_computed_gradient_times_weight():
    net = two_layer_net()
    generator = torch.Generator().manual_seed(4)
    batches = [(torch.randn(6, 5, generator=generator, dtype=torch.float64),
                torch.randn(6, 3, generator=generator, dtype=torch.float64)) for _ in range(2)]
    w1, w2 = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    grad1, grad2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for x, t in batches:  # y = W2 relu(W1 x), loss = ½‖y − t‖²
        hidden = x @ w1.T
        active = torch.relu(hidden)
        residual = active @ w2.T - t
        grad2 += residual.T @ active
        grad1 += ((residual @ w2) * (hidden > 0)).T @ x
    scores = score_weights(net, "snip", 0.5, loss_fn=half_squared_error, batches=batches)
    torch.testing.assert_close(scores["2"], (grad2 * w2).abs(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(scores["0"], (grad1 * w1).abs(), rtol=1e-12, atol=1e-14)
    assert scores["0"].abs().sum() > 0 and scores["2"].abs().sum() > 0


def test_grasp_scores_are_weight_times_full_hessian_gradient_product():
    net = two_layer_net()
    generator = torch.Generator().manual_seed(5)
    batch = (torch.randn(6, 5, generator=generator, dtype=torch.float64),
             torch.randn(6, 3, generator=generator, dtype=torch.float64))
    shapes = [net[0].weight.shape, net[2].weight.shape]
    flat = torch.cat([net[0].weight.detach().flatten(), net[2].weight.detach().flatten()])

    def loss_of(theta):
        w1, w2 = theta[:20].view(shapes[0]), theta[20:].view(shapes[1])
        x, t = batch
        return 0.5 * (torch.relu(x @ w1.T) @ w2.T - t).square().sum()

    gradient = torch.autograd.functional.jacobian(loss_of, flat)
    hessian = torch.autograd.functional.hessian(loss_of, flat)
    expected = flat * (hessian @ gradient)  # = −S of the GraSP paper; the top-k of it is kept
    scores = score_weights(net, "grasp", 0.5, loss_fn=half_squared_error, batches=[batch])
    torch.testing.assert_close(torch.cat([scores["0"].flatten(), scores["2"].flatten()]), expected,
                               rtol=1e-10, atol=1e-12)
    assert expected.abs().max() > 0 and (expected < 0).any() and (expected > 0).any()


def deep_narrow_net():
    """A wide early layer and many tiny ones: magnitude and SNIP empty whole layers at low density."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
              nn.Conv2d(32, 4, 3, padding=1), nn.ReLU()]
    for _ in range(5):
        layers += [nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(4, 1, 3, padding=1))


def test_synflow_is_data_free_and_keeps_every_layer_alive_where_magnitude_collapses():
    density = 0.005  # 57 of 11,412 weights
    collapsed = prune_at_init(deep_narrow_net(), "magnitude", density)
    assert any(int(m.sum()) == 0 for m in collapsed.values())  # the baseline does collapse here

    def no_data(model, batch):
        raise AssertionError("synflow must not evaluate the loss")

    net = deep_narrow_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    masks = prune_at_init(net, "synflow", density, loss_fn=no_data, batches=None, input_shape=(1, 1, 8, 8))
    kept = [int(m.sum()) for m in masks.values()]
    assert sum(kept) == round(density * 11412)
    assert min(kept) >= 1, kept
    after = net.state_dict()
    for key, value in before.items():  # the probe is a copy: signs and biases of the model untouched
        stored = after.get(key, after.get(key.replace(".weight", ".parametrizations.weight.original")))
        assert torch.equal(stored, value), key


def test_relaxed_bernoulli_mask_is_differentiable_in_the_logits():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, dtype=torch.float64)
    mask = RelaxedBernoulliMask(logits.clone(), temperature=0.2).double()
    mask.resample(torch.Generator().manual_seed(0))
    weight = torch.randn(3, 4, dtype=torch.float64)

    def masked(theta):
        return weight * torch.sigmoid((theta + mask.noise) / mask.temperature)

    assert torch.autograd.gradcheck(masked, (logits.clone().requires_grad_(),))
    out = mask(weight).sum()
    out.backward()
    assert mask.logits.grad is not None and mask.logits.grad.abs().sum() > 0
    # low temperature: the relaxed mask is nearly binary
    mask.temperature = 1e-3
    values = mask.relaxed_mask().detach()
    assert ((values < 1e-3) | (values > 1 - 1e-3)).float().mean() > 0.9


def test_bernoulli_kl_is_zero_at_the_prior_and_positive_elsewhere():
    rho = 0.2
    at_prior = torch.full((5,), torch.logit(torch.tensor(rho)).item(), dtype=torch.float64)
    assert bernoulli_kl(at_prior, rho).item() == pytest.approx(0.0, abs=1e-12)
    p = 0.5
    expected = p * math.log(p / rho) + (1 - p) * math.log((1 - p) / (1 - rho))
    assert bernoulli_kl(torch.zeros(5, dtype=torch.float64), rho).item() == pytest.approx(expected, rel=1e-12)


def zero_task_loss(model, batch):
    return model(batch[0]).sum() * 0.0


def test_pun_kl_term_pulls_the_mean_keep_probability_toward_the_target_density():
    batches = regression_data(1)
    pulled = score_weights(small_net(), "pun", 0.2, loss_fn=zero_task_loss, batches=batches, steps=40, lr=0.05)
    mean = torch.cat([p.flatten() for p in pulled.values()]).mean().item()
    assert abs(mean - 0.2) < 0.03  # from 0.5 to about rho = 0.2
    free = score_weights(small_net(), "pun", 0.2, loss_fn=zero_task_loss, batches=batches, steps=40, kl_weight=0.0)
    assert torch.cat([p.flatten() for p in free.values()]).sub(0.5).abs().max().item() == 0.0


def test_pun_learns_which_weights_the_task_needs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    batches = [(x, x[:, :1])]  # only the first weight should survive
    scores = score_weights(net, "pun", 1 / 8, loss_fn=mse, batches=batches, steps=150, lr=0.1)["0"].flatten()
    assert scores.argmax().item() == 0
    assert scores[0] > 0.8 and scores[1:].max() < 0.1


def test_pun_search_leaves_the_model_untouched():
    net = small_net().train()
    net[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = {k: p.requires_grad for k, p in net.named_parameters()}
    ids = {k: id(p) for k, p in net.named_parameters()}
    score_weights(net, "pun", 0.3, loss_fn=mse, batches=regression_data(), steps=5)
    assert all(not parametrize.is_parametrized(layer) for layer in prunable_weights(net).values())
    assert {k: id(p) for k, p in net.named_parameters()} == ids
    assert {k: p.requires_grad for k, p in net.named_parameters()} == flags
    assert net.training and net[1].training
    after = net.state_dict()
    assert set(after) == set(before)
    for key in before:  # weights and batch-norm statistics (which the search's forwards update)
        assert torch.equal(after[key], before[key]), key
    masks = prune_at_init(net, "pun", 0.3, loss_fn=mse, batches=regression_data(), steps=5)
    for name, layer in prunable_weights(net).items():
        assert torch.equal(layer.parametrizations.weight.original, before[f"{name}.weight"])
        assert torch.equal(layer.weight, before[f"{name}.weight"] * masks[name])


@pytest.mark.parametrize("method", ["magnitude", "snip", "synflow", "pun"])
def test_structured_variant_masks_whole_output_channels(method):
    net = small_net()
    masks = prune_at_init(net, method, 0.5, loss_fn=mse, batches=regression_data(), structured=True,
                          **FAST.get(method, {}))
    names = list(masks)
    kept_channels = 0
    for name in names[:-1]:
        per_channel = masks[name].flatten(1)
        assert torch.all((per_channel.amin(dim=1) == per_channel.amax(dim=1)))  # all or nothing per channel
        assert per_channel[:, 0].sum() >= 1
        kept_channels += int(per_channel[:, 0].sum())
    assert kept_channels == round(0.5 * (8 + 6))
    assert torch.all(masks[names[-1]] == 1)  # the output layer keeps its channels
    assert 0 < sparsity(net) < 1


def test_channel_masks_follow_the_channel_score_sums_and_handle_transposed_convolutions():
    layers = {"a": nn.ConvTranspose2d(3, 4, 2), "b": nn.Conv2d(4, 5, 1), "c": nn.Conv2d(5, 1, 1)}
    scores = {name: torch.zeros_like(layer.weight) for name, layer in layers.items()}
    scores["a"][:, 2] = 1.0  # output channel 2 of the transposed conv (dim 1)
    scores["b"][[0, 3]] = 2.0
    masks = channel_masks(scores, layers, 3 / 9)
    assert masks["a"][:, 2].eq(1).all() and masks["a"][:, [0, 1, 3]].eq(0).all()
    assert masks["b"][[0, 3]].eq(1).all() and masks["b"][[1, 2, 4]].eq(0).all()
    with pytest.raises(ValueError, match="fewer than one per prunable layer"):
        channel_masks(scores, layers, 1 / 9)


def test_bad_inputs_are_refused_with_the_argument_named():
    for density in (0, 0.0, -0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="density"):
            prune_at_init(small_net(), "magnitude", density)
    with pytest.raises(ValueError, match="method"):
        prune_at_init(small_net(), "obd", 0.5)
    for method in ("snip", "grasp", "pun"):
        with pytest.raises(ValueError, match="data-driven"):
            prune_at_init(small_net(), method, 0.5)
        with pytest.raises(ValueError, match="data-driven"):
            prune_at_init(small_net(), method, 0.5, loss_fn=mse)
        with pytest.raises(ValueError, match="data-driven"):
            prune_at_init(small_net(), method, 0.5, batches=regression_data())
    with pytest.raises(ValueError, match="batches: is empty"):
        prune_at_init(small_net(), "snip", 0.5, loss_fn=mse, batches=iter([]))
    with pytest.raises(ValueError, match="unknown option"):
        prune_at_init(small_net(), "pun", 0.5, loss_fn=mse, batches=regression_data(), temprature=0.2)
    with pytest.raises(ValueError, match="loss_fn: expected a scalar"):
        prune_at_init(small_net(), "snip", 0.5, loss_fn=lambda m, b: m(b[0]), batches=regression_data())
    with pytest.raises(ValueError, match="does not depend"):
        prune_at_init(small_net(), "snip", 0.5, loss_fn=lambda m, b: torch.tensor(1.0), batches=regression_data())
    with pytest.raises(ValueError, match="network"):
        prune_at_init(small_net(), "synflow", 0.5, network="nonexistent")
    masked = small_net()
    apply_masks(masked, {"0": torch.ones_like(masked[0].weight)})
    with pytest.raises(ValueError, match="already masked"):
        prune_at_init(masked, "magnitude", 0.5)
    with pytest.raises(TypeError, match="model"):
        prune_at_init("not a model", "magnitude", 0.5)
