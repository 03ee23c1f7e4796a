"""Lottery image priors: IMP schedule, persistent masks, rewinding, the stopping rule and its matching
ticket, weight-sharing IMP (Algorithm 2), ticket files and transfer, SynFlow on the priors, the CLI."""
from __future__ import annotations

import json

import pytest
import torch

import mbdlfast.prune.lottery as lottery
from mbdlfast.cli import main
from mbdlfast.dip import Denoising, DIPFit, Inpainting, fit_dip
from mbdlfast.models import DeepDecoder, SkipHourglass
from mbdlfast.prune.lottery import iterative_magnitude_pruning, load_ticket, rewind, save_ticket, transfer_ticket
from mbdlfast.prune.masking import apply_masks, current_masks, global_magnitude_masks, prunable_weights, sparsity


def _tiny_net(out_channels: int = 3, seed: int = 0) -> SkipHourglass:
    torch.manual_seed(seed)
    return SkipHourglass(input_depth=8, out_channels=out_channels, levels=2, channels=12, skip_channels=4)


def _effective_weights(net) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach().clone() for name, layer in prunable_weights(net).items()}


def _problem(seed: int = 0):
    truth = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    task = Denoising()
    return task, task.measure(truth, seed=seed), truth


def test_imp_prunes_twenty_percent_of_the_remaining_weights_per_round():
    net = _tiny_net()
    total = sum(m.numel() for m in current_masks(net).values())
    task, y, truth = _problem()
    result = iterative_magnitude_pruning(net, task, y, rounds=3, iters=3, reference=truth, patience=None)
    sparsities = [r["sparsity"] for r in result.records]
    for got, expected in zip(sparsities, [0.0, 0.2, 0.36, 0.488]):
        assert abs(got - expected) <= 1.0 / total + 1e-9
    assert [r["round"] for r in result.records] == [0, 1, 2, 3]
    assert all(r["psnr"] is not None and r["loss"] > 0 for r in result.records)
    # nested masks: every round prunes a subset of the previous round's survivors
    for earlier, later in zip(result.rounds[1:], result.rounds[2:]):
        assert all(bool((later.masks[n] <= earlier.masks[n]).all()) for n in earlier.masks)
    assert sparsity(net) == pytest.approx(sparsities[-1])
    assert not result.stopped_early


def test_pruned_weights_stay_exactly_zero_through_fitting():
    net = _tiny_net()
    task, y, truth = _problem()
    result = iterative_magnitude_pruning(net, task, y, rounds=2, iters=2, patience=None)
    masks = result.ticket()
    fit_dip(net, task, y, iters=5, lr=0.05)  # more Adam steps on the masked network
    weights = _effective_weights(net)
    dead = sum(int((masks[n] == 0).sum()) for n in masks)
    assert dead > 0
    for name, mask in masks.items():
        assert torch.equal(weights[name][mask == 0], torch.zeros(int((mask == 0).sum())))
    assert torch.equal(current_masks(net)["layers.head"], masks["layers.head"])
    assert any(k.endswith("parametrizations.weight.0.mask") for k in net.state_dict())  # persistent buffers


def test_rewind_restores_the_initial_weights_on_alive_entries():
    net = _tiny_net()
    init = {k: v.clone() for k, v in net.state_dict().items()}
    task, y, _ = _problem()
    fit_dip(net, task, y, iters=3, lr=0.05)
    trained = _effective_weights(net)
    masks = global_magnitude_masks(net, 0.2)
    rewind(net, init, masks)
    weights = _effective_weights(net)
    changed = 0
    for name, mask in masks.items():
        alive = mask == 1
        assert torch.equal(weights[name][alive], init[f"{name}.weight"][alive])
        assert torch.equal(weights[name][~alive], torch.zeros(int((~alive).sum())))
        changed += int((trained[name] != init[f"{name}.weight"]).sum())
    assert changed > 0  # training did move the weights, so the rewind did something
    bn = "layers.body.down.0.1"
    assert torch.equal(net.state_dict()[f"{bn}.running_mean"], init[f"{bn}.running_mean"])


def test_late_rewinding_uses_the_weights_of_iteration_k():
    task, y, truth = _problem()
    reference_net = _tiny_net()
    snapshot = fit_dip(reference_net, task, y, iters=4, snapshot_iter=2, code=None, reference=truth).snapshot
    init = _tiny_net().state_dict()
    result = iterative_magnitude_pruning(_tiny_net(), task, y, rounds=1, iters=4, rewind_iter=2, reference=truth,
                                         patience=None)
    assert all(torch.equal(result.rewind_state[k], snapshot[k]) for k in snapshot)
    assert not torch.equal(result.rewind_state["layers.head.weight"], init["layers.head.weight"])
    at_init = iterative_magnitude_pruning(_tiny_net(), task, y, rounds=1, iters=2, patience=None)
    assert all(torch.equal(at_init.rewind_state[k], init[k]) for k in init)


def test_stopping_rule(monkeypatch):
    assert lottery._rising([1.0, 2.0, 3.0], 2)
    assert not lottery._rising([1.0, 2.0, 1.5, 2.0], 2)
    assert not lottery._rising([1.0, 2.0, 3.0], None)
    assert lottery._rising([3.0, 1.0, 2.0], 1)
    losses = iter([1.0, 0.9, 1.1, 1.0, 1.2, 1.3, 1.4, 1.5])

    def fake_fit(net, task, measurement, **options):
        out = torch.zeros(1, 3, 8, 8)
        return DIPFit(out, out, {"loss": []}, next(losses))

    monkeypatch.setattr(lottery, "fit_dip", fake_fit)
    task, y, _ = _problem()
    result = iterative_magnitude_pruning(_tiny_net(), task, y, rounds=7, iters=1, patience=2)
    # losses 1.0, 0.9, 1.1 (rise), 1.0, 1.2 (rise), 1.3 (rise) -> stop after round 5
    assert result.stopped_early and [r["round"] for r in result.records] == [0, 1, 2, 3, 4, 5]
    # the matching ticket is round 3, before the two rises: what ticket() returns, not the last round
    assert result.chosen_round == 3
    assert all(torch.equal(result.ticket()[n], result.rounds[3].masks[n]) for n in result.rounds[3].masks)
    assert not all(torch.equal(result.ticket()[n], result.rounds[5].masks[n]) for n in result.rounds[5].masks)


def test_without_a_stop_the_last_round_is_the_ticket():
    task, y, _ = _problem()
    result = iterative_magnitude_pruning(_tiny_net(), task, y, rounds=2, iters=1, patience=None)
    assert result.chosen_round == 2 and not result.stopped_early


def test_weight_sharing_imp_fits_one_code_and_one_output_to_every_image(monkeypatch):
    """Algorithm 2: one fixed code for all images; the objective is the mean over the images of the
    misfit of the single output."""
    truths = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    task = Denoising()
    y = task.measure(truths, seed=0)
    seen = []
    original = lottery.fit_dip

    def spy(net, task, measurement, **options):
        seen.append(options["code"].shape)
        return original(net, task, measurement, **options)

    monkeypatch.setattr(lottery, "fit_dip", spy)
    result = iterative_magnitude_pruning(_tiny_net(), task, y, rounds=1, iters=2, reference=truths, patience=None,
                                         keep_reconstructions=True)
    assert result.code.shape[0] == 1 and all(shape[0] == 1 for shape in seen)
    assert result.reconstructions[0].shape[0] == 1
    net = _tiny_net()
    with torch.no_grad():
        output = net(result.code)
    expected = sum(task.loss(output, y[i:i + 1]) for i in range(3)) / 3
    assert float(task.loss(output.expand(3, -1, -1, -1), y)) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="2 code\\(s\\) for 3 measurement"):
        fit_dip(_tiny_net(), task, y, iters=1, code=torch.rand(2, 8, 8, 8))


def test_ticket_files_round_trip_and_refuse_another_architecture(tmp_path):
    task, y, _ = _problem()
    source = _tiny_net()
    result = iterative_magnitude_pruning(source, task, y, rounds=2, iters=2, patience=None)
    ticket = result.ticket_file(source, 1, {"images": ["toy"], "task": "denoise"})
    path = save_ticket(tmp_path / "t.pt", ticket)
    loaded = load_ticket(path)
    assert (loaded.round, loaded.sparsity, loaded.found_on["network"]) == (1, result.rounds[1].sparsity, "SkipHourglass")
    target = _tiny_net(seed=5)
    loaded.apply(target)
    assert all(torch.equal(current_masks(target)[n], result.rounds[1].masks[n]) for n in loaded.masks)
    weights = _effective_weights(target)
    assert torch.equal(weights["layers.head"], result.rewind_state["layers.head.weight"] * loaded.masks["layers.head"])
    with pytest.raises(ValueError, match="layers.head.weight is \\[3, 12, 1, 1\\] in the ticket and \\[2, 12, 1, 1\\]"):
        loaded.apply(_tiny_net(out_channels=2))
    with pytest.raises(ValueError, match="found on a SkipHourglass; this network is a DeepDecoder"):
        loaded.apply(DeepDecoder(channels=8, layers=2))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.pt could not be read"):
        load_ticket(tmp_path / "bad.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an mbdlfast lottery ticket"):
        load_ticket(tmp_path / "other.pt")


def test_ticket_transfers_to_another_image_and_task():
    task, y, _ = _problem()
    source = _tiny_net()
    init = {k: v.clone() for k, v in source.state_dict().items()}
    ticket = iterative_magnitude_pruning(source, task, y, rounds=2, iters=2, patience=None).ticket()
    target = _tiny_net(seed=7)
    transfer_ticket(ticket, target, init_state=init)
    assert all(torch.equal(current_masks(target)[n], ticket[n]) for n in ticket)
    weights = _effective_weights(target)
    assert torch.equal(weights["layers.head"], init["layers.head.weight"] * ticket["layers.head"])
    other_truth = torch.rand(1, 3, 8, 8)
    inpaint = Inpainting((torch.rand(8, 8) < 0.5).float())
    fit_dip(target, inpaint, inpaint.measure(other_truth), iters=2, lr=0.05)
    weights = _effective_weights(target)
    assert all(torch.equal(weights[n][ticket[n] == 0], torch.zeros(int((ticket[n] == 0).sum()))) for n in ticket)
    kept = _tiny_net(seed=3)
    before = _effective_weights(kept)
    transfer_ticket(ticket, kept)  # no init_state: keep the net's own weights under the ticket
    assert torch.equal(_effective_weights(kept)["layers.head"], before["layers.head"] * ticket["layers.head"])
    with pytest.raises(ValueError, match="shape"):
        transfer_ticket(ticket, _tiny_net(out_channels=2))


def test_synflow_sees_the_hourglass_before_its_sigmoid():
    """The output sigmoid sits outside ``layers``: SynFlow's huge all-ones activations would saturate it,
    zero every score and leave the masks to tie-breaking (whole early layers pruned)."""
    from mbdlfast.prune.at_init import score_weights

    net = _tiny_net()
    scores = score_weights(net, "synflow", 0.5, input_shape=(1, 8, 8, 8), iterations=5)
    for name, score in scores.items():
        if ".skip." not in name:  # SynFlow may drop the thin skip branches, never a main-path layer
            assert float(score.abs().max()) > 0, name


@pytest.mark.parametrize("net", [SkipHourglass(), DeepDecoder()], ids=["hourglass", "deep_decoder"])
def test_synflow_runs_on_the_full_size_priors_with_its_default_input(net):
    from mbdlfast.prune.at_init import prune_at_init

    prune_at_init(net, "synflow", 0.2, iterations=2)
    assert sparsity(net) == pytest.approx(0.8, abs=1e-3)


def test_imp_rejects_bad_input():
    task, y, _ = _problem()
    with pytest.raises(ValueError, match="rounds"):
        iterative_magnitude_pruning(_tiny_net(), task, y, rounds=0, iters=1)
    with pytest.raises(ValueError, match="rewind_iter"):
        iterative_magnitude_pruning(_tiny_net(), task, y, rounds=1, iters=1, rewind_iter=2)
    with pytest.raises(ValueError, match="prune_fraction"):
        iterative_magnitude_pruning(_tiny_net(), task, y, rounds=1, iters=1, prune_fraction=1.0)
    masked = _tiny_net()
    apply_masks(masked, global_magnitude_masks(masked, 0.5))
    with pytest.raises(ValueError, match="dense"):
        iterative_magnitude_pruning(masked, task, y, rounds=1, iters=1)


def test_cli_lip_end_to_end(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MBDLFAST_SHARED_DATA", str(shared_data))
    out = tmp_path / "lip"
    status = main(["lip", "--image", "F16", "--task", "denoise", "--rounds", "2", "--iters", "2", "--size", "64",
                   "--out", str(out), "--no-progress", "--device", "cpu"])
    assert status == 0
    payload = json.loads((out / "lip.json").read_text())
    assert payload["sparsity"] == pytest.approx([0.2, 0.36], abs=1e-5)
    assert len(payload["psnr"]) == 2 and all(p > 0 for p in payload["psnr"])
    assert payload["settings"]["task"] == "denoise"
    assert (out / "lip_psnr.png").stat().st_size > 0 and (out / "lip_images.png").stat().st_size > 0
    assert payload["chosen_round"] == 2 and (out / "lip_layers.png").stat().st_size > 0
    assert load_ticket(out / "ticket.pt").round == 2 and load_ticket(out / "tickets" / "round_1.pt").round == 1
    # the ticket transfers to another image and task from the command line
    transfer = tmp_path / "transfer"
    assert main(["lip", "--image", "kate", "--task", "inpaint", "--iters", "2", "--size", "64", "--ticket",
                 str(out / "ticket.pt"), "--out", str(transfer), "--no-progress", "--device", "cpu"]) == 0
    record = json.loads((transfer / "transfer.json").read_text())
    assert set(record["fits"]) == {"ticket", "dense", "random"} and record["ticket"]["round"] == 2
    assert record["ticket"]["found_on"]["images"] == ["F16"] and (transfer / "transfer.png").stat().st_size > 0


def test_cli_lip_deep_decoder_multi_image(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MBDLFAST_SHARED_DATA", str(shared_data))
    out = tmp_path / "dd"
    assert main(["lip", "--image", "set5/bird", "set5/head", "--net", "deep_decoder", "--task", "sr4", "--rounds",
                 "1", "--iters", "2", "--size", "64", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert load_ticket(out / "ticket.pt").found_on == {"images": ["set5/bird", "set5/head"], "task": "sr4",
                                                        "net": "deep_decoder", "size": 64, "network": "DeepDecoder"}


@pytest.mark.parametrize("arguments, message", [
    (["--image", "no_such_picture"], "image"),
    (["--task", "deblur"], "--task"),
    (["--rounds", "0"], "--rounds"),
    (["--size", "48"], "--size"),
    (["--net", "resnet"], "--net"),
    (["--ticket", "missing.pt"], "ticket: missing.pt does not exist"),
])
def test_cli_lip_bad_input(shared_data, tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.setenv("MBDLFAST_SHARED_DATA", str(shared_data))
    status = main(["lip", "--iters", "1", "--size", "64", "--out", str(tmp_path), "--no-progress", *arguments])
    assert status == 2
    assert message in capsys.readouterr().err


def test_cli_lip_config_file_and_overrides_reach_the_settings(tmp_path, monkeypatch, capsys):
    import mbdlfast.commands.lip as lip_command

    seen = []
    monkeypatch.setattr(lip_command, "run_lip", lambda settings: seen.append(settings) or 0)
    config = tmp_path / "lip.yaml"
    config.write_text("image: [F16, snail]\ntask: inpaint\nrounds: 3\nsize: 128\nema: 0.9\n")
    assert main(["lip", "--config", str(config), "--rounds", "4", "--no-progress", "iters=7", "size=none"]) == 0
    settings = seen[-1]
    assert (settings.image, settings.task, settings.ema, settings.lr) == (("F16", "snail"), "inpaint", 0.9, 0.01)
    assert (settings.rounds, settings.iters, settings.size, settings.progress) == (4, 7, None, False)
    assert main(["lip", "--config", str(config), "image=kate,vase"]) == 0 and seen[-1].image == ("kate", "vase")
    for extra, message in ((["bogus=1"], "unknown setting 'bogus'"), (["rounds=many"], "rounds: expected")):
        capsys.readouterr()
        assert main(["lip", "--config", str(config), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mbdlfast lip: error:") and err.count("\n") == 1 and message in err, err
