"""Structured pruning (torch-pruning DepGraph) of every registry family, and pruned checkpoints."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch_pruning as tp
from torch import nn

from mbdlfast import ops

from mbdlfast.cli import main as cli_main
from mbdlfast.training import ModelConfig, build_model, load_checkpoint, save_checkpoint
from mbdlfast.models import EDSR
from mbdlfast.physics.sense import SenseOperator
from mbdlfast.training.checkpoint import save_pruned
from mbdlfast.prune import count_macs, count_params, prune_structured
from mbdlfast.training.checkpoint import architecture_difference
from mbdlfast.prune.structured import default_ignored_layers

SIZE, COILS = 32, 3
SMALL = {
    "deq": {"prior_kwargs": {"n_resblocks": 2, "n_feats": 32}, "solver_kwargs": {"max_iter": 6}},
    "modl": {"prior_kwargs": {"depth": 4, "channels": 32}, "num_iter": 2, "cg_iter": 3},
    "varnet": {"num_cascades": 2, "chans": 8, "pools": 2},
    "e2e_varnet": {"num_cascades": 2, "chans": 8, "pools": 2, "sens_chans": 4, "sens_pools": 2},
    "edsr": {"n_resblocks": 2, "n_feats": 32},
}
# the output convolution(s) that keep their shape by default
OUTPUT_CONVS = {
    "deq": ["denoiser.net.tail"], "modl": ["denoiser.net.layers.8"], "edsr": ["net.tail"],
    "varnet": [f"cascades.{i}.model.unet.up_conv.1.1" for i in range(2)],
    "e2e_varnet": [f"cascades.{i}.model.unet.up_conv.1.1" for i in range(2)],
}


def example(name: str, batch_size: int = 2):
    generator = torch.Generator().manual_seed(1)
    shape = (batch_size, COILS, SIZE, SIZE)
    kspace = torch.randn(shape, dtype=torch.complex64, generator=generator)
    maps = torch.randn(shape, dtype=torch.complex64, generator=generator)
    maps = maps / maps.abs().square().sum(dim=1, keepdim=True).sqrt()
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[::3] = True
    mask[SIZE // 2 - 3:SIZE // 2 + 3] = True
    kspace = kspace * mask
    if name == "edsr":
        return (torch.fft.ifft2(kspace).sum(dim=1),)
    return (kspace, SenseOperator(maps, mask))


def small_model(name: str):
    torch.manual_seed(0)
    model, _ = build_model(name, SMALL[name])
    return model.eval()


def convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}


@pytest.mark.parametrize("name", ["deq", "modl", "varnet", "e2e_varnet", "edsr"])
def test_pruning_shrinks_every_family_and_keeps_it_working(name):
    model = small_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = example(name)
    round_to = 4 if "varnet" in name else 8  # the U-Nets' first level has 8 channels
    pruned = prune_structured(model, inputs, 0.5, round_to=round_to)

    # the input model is untouched: same tensors, same shapes
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    dense_params, pruned_params = count_params(model), count_params(pruned)
    # half the channels of (almost) every conv: weights shrink ~4x; never more than the dense half
    assert pruned_params < 0.4 * dense_params, (dense_params, pruned_params)
    assert count_macs(pruned, inputs) < 0.4 * count_macs(model, inputs)

    dense_convs, pruned_convs = convs(model), convs(pruned)
    ignored = OUTPUT_CONVS[name] + [n for n in dense_convs if n.startswith("sens_net.")]
    for conv_name, conv in pruned_convs.items():
        dense = dense_convs[conv_name]
        if conv_name in ignored:
            assert conv.out_channels == dense.out_channels, conv_name
        if conv.out_channels != dense.out_channels:
            assert conv.out_channels % round_to == 0 and conv.out_channels == dense.out_channels // 2, conv_name
    assert all(pruned_convs[n].weight.shape == dense_convs[n].weight.shape
               for n in dense_convs if n.startswith("sens_net."))  # the sensitivity net is never pruned
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. an instance norm told the wrong number of channels
        out = pruned(*inputs)
    assert out.shape == model(*inputs).shape and torch.isfinite(torch.view_as_real(out)).all()


@pytest.mark.parametrize("name", ["deq", "varnet"])
def test_tracing_the_networks_prunes_like_a_whole_model_trace(name):
    model = small_model(name)
    inputs = example(name, batch_size=1)
    ours = prune_structured(model, inputs, 0.5, round_to=4)
    whole = copy.deepcopy(model)
    with ops.use_backend("torch"):
        pruner = tp.pruner.MetaPruner(whole, inputs, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                      pruning_ratio=0.5, round_to=4, ignored_layers=default_ignored_layers(whole))
        pruner.step()
    assert count_params(ours) < count_params(model)
    assert ours.state_dict().keys() == whole.state_dict().keys()
    assert all(torch.equal(value, whole.state_dict()[key]) for key, value in ours.state_dict().items())


def test_edsr_residual_groups_stay_consistent_and_plain_cnns_prune_too():
    torch.manual_seed(0)
    edsr = EDSR(n_resblocks=2, n_feats=32).eval()
    image = torch.randn(2, 2, 21, 19)  # a plain real CNN: odd sizes, batch 2
    pruned = prune_structured(edsr, (image,), 0.3, round_to=8)
    # 32 * 0.7 = 22.4 -> 22 kept -> rounded down to 16; the head, every block output and the body end
    # share one group (the residual sums), so they are pruned alike
    assert [pruned.head.out_channels, pruned.body[0].body[2].out_channels, pruned.body[2].out_channels,
            pruned.tail.in_channels] == [16] * 4
    assert pruned.tail.out_channels == 2 and pruned(image).shape == image.shape


def test_training_mode_and_batch_norm_statistics_are_left_alone():
    model = small_model("modl").train()
    inputs = example("modl")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_structured(model, inputs, 0.5)
    count_macs(model, inputs)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # running stats included
    assert all(m.training for m in model.modules()) and all(m.training for m in pruned.modules())
    batch_norm = pruned.denoiser.net.layers[3]
    assert batch_norm.num_features == 16 and batch_norm.running_mean.shape == (16,)


def test_l1_and_l2_importance_choose_different_channels():
    model = small_model("edsr")
    with torch.no_grad():  # make one channel of the head large in L2 but small in L1, another the reverse
        weight = model.net.head.weight
        weight[0].fill_(0.01)
        weight[0, 0, 1, 1] = 3.0   # L1 0.01*17 + 3 ~ 3.2, L2 ~ 3.0
        weight[1].fill_(0.2)       # L1 3.6, L2 ~ 0.85
    l1 = prune_structured(model, example("edsr"), 0.5, importance="l1", round_to=1)
    l2 = prune_structured(model, example("edsr"), 0.5, importance="l2", round_to=1)
    assert l1.net.head.out_channels == l2.net.head.out_channels == 16
    assert not torch.equal(l1.net.head.weight, l2.net.head.weight)


def test_groups_that_rounding_would_empty_stay_whole():
    model = small_model("varnet")
    pruned = prune_structured(model, example("varnet"), 0.5, round_to=16)
    unet = pruned.cascades[0].model.unet
    # 8 channels -> 4 kept -> rounded down to 0: left whole; 32 -> 16 kept: pruned
    assert unet.down_sample_layers[0].layers[0].out_channels == 8 and unet.conv.layers[0].out_channels == 16
    assert unet.down_sample_layers[1].layers[0].out_channels == 16


def test_global_and_iterative_pruning():
    model = small_model("varnet")
    inputs = example("varnet")
    local = prune_structured(model, inputs, 0.5, round_to=4)
    stepwise = prune_structured(model, inputs, 0.5, round_to=4, iterative_steps=3)
    globally = prune_structured(model, inputs, 0.5, round_to=4, global_pruning=True)
    assert count_params(stepwise) < count_params(model) and count_params(globally) < count_params(model)
    widths = [c.out_channels for c in convs(globally).values()]
    assert widths != [c.out_channels for c in convs(local).values()]  # one ranking over all layers
    with torch.no_grad():
        assert torch.isfinite(torch.view_as_real(globally(*inputs))).all()


def test_ignored_layers_by_name_and_module_and_ratio_zero():
    model = small_model("varnet")
    inputs = example("varnet")
    pruned = prune_structured(model, inputs, 0.5, round_to=4,
                              ignored_layers=["cascades.0", model.cascades[1].model.unet.down_sample_layers[0]])
    assert all(c.out_channels == convs(model)[n].out_channels for n, c in convs(pruned).items()
               if n.startswith("cascades.0."))
    assert pruned.cascades[1].model.unet.down_sample_layers[0].layers[0].out_channels == 8
    assert pruned.cascades[1].model.unet.conv.layers[0].out_channels == 16
    copy = prune_structured(model, inputs, 0)
    assert copy is not model and count_params(copy) == count_params(model)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"ratio": -0.1}, ValueError, "ratio"),
    ({"ratio": 1.0}, ValueError, "ratio"),
    ({"ratio": 0.5, "ignored_layers": ["cascades.7"]}, ValueError, "cascades.7"),
    ({"ratio": 0.5, "importance": "l3"}, ValueError, "importance"),
])
def test_bad_arguments(kwargs, error, match):
    model = small_model("varnet")
    with pytest.raises(error, match=match):
        prune_structured(model, example("varnet"), **kwargs)


@pytest.mark.parametrize("name", ["deq", "modl", "e2e_varnet"])
def test_pruned_checkpoint_round_trip_is_exact(tmp_path, name):
    model = small_model(name)
    inputs = example(name, batch_size=1)
    pruned = prune_structured(model, inputs, 0.5, round_to=4)
    path = save_pruned(pruned, tmp_path / "pruned.pt", name, SMALL[name], extra={"ratio": 0.5})
    loaded = load_checkpoint(path)
    assert loaded.extra == {"ratio": 0.5} and loaded.model_name == name
    assert {k: v.shape for k, v in loaded.model.state_dict().items()} == \
           {k: v.shape for k, v in pruned.state_dict().items()}
    assert architecture_difference(loaded.model, pruned) == {}  # norms' num_features included
    with torch.no_grad():
        assert torch.equal(loaded.model(*inputs), pruned(*inputs))
    # a dense checkpoint is still written as format 1 and loads as before
    dense = save_checkpoint(tmp_path / "dense.pt", model, ModelConfig(name, SMALL[name]))
    assert torch.load(dense, weights_only=True)["format_version"] == 1
    assert count_params(load_checkpoint(dense).model) == count_params(model)


def test_pruned_checkpoint_of_another_architecture_is_refused(tmp_path):
    pruned = prune_structured(small_model("edsr"), example("edsr"), 0.5)
    path = save_pruned(pruned, tmp_path / "edsr.pt", "edsr", SMALL["edsr"])
    payload = torch.load(path, weights_only=True)

    payload["model"] = {"name": "dncnn", "kwargs": build_model("dncnn", {"depth": 3})[1]}
    torch.save(payload, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match="does not have") as info:
        load_checkpoint(tmp_path / "renamed.pt")
    assert "\n" not in str(info.value)

    payload = torch.load(path, weights_only=True)
    payload["architecture"]["net.head"]["out_channels"] = 24  # tampered: no longer fits the weights
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="do not fit") as info:
        load_checkpoint(tmp_path / "tampered.pt")
    assert "\n" not in str(info.value)


def test_cli_prune_end_to_end(tmp_path, capsys):
    model = small_model("deq")
    source = save_checkpoint(tmp_path / "dense.pt", model, ModelConfig("deq", SMALL["deq"]))
    out = tmp_path / "pruned.pt"
    assert cli_main(["prune", "--model", str(source), "--ratio", "0.5", "--image-size", "16", "--coils", "2",
                     "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "dense" in table and "pruned" in table and f"{count_params(model):,}" in table
    loaded = load_checkpoint(out, expected_model="deq")
    assert loaded.model.denoiser.net.head.out_channels == 16
    assert loaded.extra["pruning"]["dense_params"] == count_params(model)
    assert cli_main(["prune", "--model", str(source), "--ratio", "0.5", "--out", str(source)]) == 2
    assert "input checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["prune", "--help"])
    assert "examples (" in capsys.readouterr().out


def test_cli_prune_config_file_and_overrides_reach_the_settings(tmp_path, monkeypatch, capsys):
    import mbdlfast.commands.prune as prune_command

    seen = []
    monkeypatch.setattr(prune_command, "prune_checkpoint", lambda settings: seen.append(settings) or 0)
    config = tmp_path / "prune.yaml"
    config.write_text("model: dense.pt\nratio: 0.5\nimportance: l2\nround_to: 4\nout: pruned.pt\n")
    assert cli_main(["prune", "--config", str(config), "--global", "--round-to", "2", "ratio=0.25", "steps=3"]) == 0
    settings = seen[-1]
    assert (settings.model, settings.out, settings.importance, settings.image_size) == (
        "dense.pt", "pruned.pt", "l2", 64)  # the file over the defaults
    assert (settings.ratio, settings.round_to, settings.global_pruning, settings.steps) == (0.25, 2, True, 3)
    for extra, message in ((["bogus=1"], "unknown setting 'bogus'"), (["steps=1.5"], "steps: expected an integer")):
        capsys.readouterr()
        assert cli_main(["prune", "--config", str(config), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mbdlfast prune: error:") and err.count("\n") == 1 and message in err, err
    assert cli_main(["prune", "--model", "dense.pt", "--out", "p.pt"]) == 2
    assert "ratio: required" in capsys.readouterr().err
