"""Persistent masks: applied through training, global top-k, IMP rounds, state_dict round trip."""
import copy

import pytest
import torch
from torch import nn

from mbdlfast.prune.masking import (WeightMask, apply_masks, current_masks, global_magnitude_masks, masks_from_scores,
                                    prunable_weights, remove_masks, sparsity)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))


def test_prunable_weights_are_the_convolutions():
    assert sorted(prunable_weights(small_net())) == ["0", "3"]
    with pytest.raises(ValueError, match="no prunable layers"):
        prunable_weights(nn.Sequential(nn.ReLU()))


def test_masks_stay_applied_through_training_and_survive_state_dict():
    net = small_net()
    masks = global_magnitude_masks(net, 0.5)
    apply_masks(net, masks)
    assert sparsity(net) == pytest.approx(0.5, abs=1e-3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        net(torch.randn(2, 2, 9, 7)).square().mean().backward()
        optimizer.step()
    net(torch.randn(1, 2, 9, 7))
    for name, module in prunable_weights(net).items():
        assert torch.all(module.weight[masks[name] == 0] == 0)
    clone = small_net()
    apply_masks(clone, current_masks(clone))
    clone.load_state_dict(net.state_dict())
    x = torch.randn(1, 2, 9, 7)
    net.eval(), clone.eval()
    assert torch.equal(net(x), clone(x))
    assert torch.equal(copy.deepcopy(net)(x), net(x))


def test_imp_rounds_remove_a_fraction_of_the_remaining_weights():
    net = small_net()
    for expected in (0.2, 0.36, 0.488):
        apply_masks(net, global_magnitude_masks(net, 0.2))
        assert sparsity(net) == pytest.approx(expected, abs=2e-3)
    before = current_masks(net)
    apply_masks(net, global_magnitude_masks(net, 0.2))
    for name, mask in current_masks(net).items():
        assert torch.all(mask <= before[name])  # dead weights stay dead


def test_masks_from_scores_is_one_global_top_k():
    scores = {"a": torch.tensor([1.0, 5.0, 3.0]), "b": torch.tensor([[4.0, 0.5], [2.0, 6.0]])}
    masks = masks_from_scores(scores, 3 / 7)
    assert masks["a"].tolist() == [0, 1, 0] and masks["b"].tolist() == [[1, 0], [0, 1]]
    alive = {"a": torch.tensor([1.0, 0.0, 1.0]), "b": torch.ones(2, 2)}
    masks = masks_from_scores(scores, 2 / 7, alive=alive)
    assert masks["a"][1] == 0 and masks["b"].tolist() == [[1, 0], [0, 1]]


def test_remove_masks_makes_zeros_permanent():
    net = small_net()
    apply_masks(net, global_magnitude_masks(net, 0.5))
    remove_masks(net)
    assert not any(isinstance(m, WeightMask) for m in net.modules())
    assert sparsity(net) == 0.0  # no masks left; the zeros are in the weights
    assert float((net[0].weight == 0).float().mean()) > 0.3


@pytest.mark.parametrize("bad, message", [
    ({"9": torch.ones(1)}, "not a prunable layer"),
    ({"0": torch.ones(3, 3)}, "expected shape"),
    ({"0": torch.full((8, 2, 3, 3), 0.5)}, "zeros and ones"),
])
def test_apply_masks_rejects_bad_masks(bad, message):
    with pytest.raises(ValueError, match=message):
        apply_masks(small_net(), bad)


def test_bad_fractions():
    with pytest.raises(ValueError, match="density"):
        masks_from_scores({"a": torch.ones(3)}, 0.0)
    with pytest.raises(ValueError, match="prune_fraction"):
        global_magnitude_masks(small_net(), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        masks_from_scores({"a": torch.tensor([1.0, float("nan")])}, 0.5)
