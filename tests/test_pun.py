"""The PUN experiment: masked MoDL through training and checkpoints, the real-brain test slice,
the result rows and summary, and the ``mbdlfast pun`` command end to end at a tiny size."""
import copy
import json

import pytest
import torch

from mbdlfast.cli import main as cli_main
from mbdlfast.training.checkpoint import load_checkpoint
from mbdlfast.training.data import TrainingSlices, collate_batch
from mbdlfast.training.losses import loss_function
from mbdlfast.training.registry import build_model, model_spec
from mbdlfast.training.trainer import Trainer
from mbdlfast.physics.sense import SenseOperator
from mbdlfast.prune.at_init import prune_at_init
from mbdlfast.prune.masking import current_masks, prunable_weights, sparsity
from mbdlfast.experiments.pun import DENSE, SHIFTS, PunConfig, brain_test_batch, run_pun, summarize

TINY_MODL = {"num_iter": 1, "cg_iter": 2, "prior_kwargs": {"channels": 6}}


def tiny_config(**changes) -> PunConfig:
    settings = dict(methods=("pun", "random"), density=0.25, image_size=12, num_coils=2, train_slices=2,
                    test_slices=1, model_kwargs=TINY_MODL, steps=2, batch_size=1, search_steps=2, score_batches=1,
                    device="cpu")
    settings.update(changes)
    return PunConfig(**settings)


def test_masked_modl_trains_with_pruned_weights_held_at_zero_and_checkpoints_with_its_masks(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    model, _ = build_model("modl", TINY_MODL)
    items = TrainingSlices(config.train_data(), seed=0)
    spec, loss = model_spec("modl"), loss_function("smooth_l1")
    masks = prune_at_init(model, "pun", 0.25, loss_fn=lambda m, b: loss(spec.reconstruct(m, b), b.target),
                          batches=[collate_batch([items[0]])], steps=2)
    assert sorted(masks) == sorted(prunable_weights(model))
    initial = {name: layer.parametrizations.weight.original.detach().clone()
               for name, layer in prunable_weights(model).items()}
    Trainer(config.train_config(tmp_path), model=model).fit()
    for name, layer in prunable_weights(model).items():
        assert torch.all(layer.weight[masks[name] == 0] == 0)
        kept = masks[name] == 1
        assert not torch.equal(layer.weight[kept], initial[name][kept])  # the kept weights did train
    assert sparsity(model) == pytest.approx(0.75, abs=1e-3)
    loaded = load_checkpoint(tmp_path / "checkpoint.pt", expected_model="modl").model
    for name, mask in current_masks(loaded).items():
        assert torch.equal(mask, masks[name])
    batch = collate_batch([items[1]])
    model.eval()
    torch.testing.assert_close(loaded(batch.kspace, batch.physics()), model(batch.kspace, batch.physics()))


def test_brain_test_batch_is_the_normalised_undersampled_real_slice(shared_data):
    base = shared_data / "mri" / "auto-espirit" / "brain_clean"
    if not base.with_suffix(".cfl").is_file():
        pytest.skip(f"{base}.cfl not found")
    config = tiny_config(image_size=32)
    batch = brain_test_batch(base, config)
    height = round(32 * 230 / 180)
    assert batch.kspace.shape == (1, 8, height, 32) and batch.maps.shape == (1, 8, height, 32)
    assert batch.target.shape == (1, height, 32) and batch.kspace.dtype == torch.complex64
    assert batch.mask.shape == (1, 32) and 32 / 4 <= int(batch.mask.sum()) < 32
    assert torch.all(batch.kspace[..., ~batch.mask[0]] == 0)
    zero_filled = SenseOperator(batch.maps, batch.mask).A_adjoint(batch.kspace)
    assert zero_filled.abs().max().item() == pytest.approx(1.0, rel=1e-5)
    # the target is the coil combination of the fully sampled data: consistent with the sampled lines
    forward = SenseOperator(batch.maps, batch.mask).A(batch.target)
    relative = (forward - batch.kspace).norm() / batch.kspace.norm()
    assert relative < 0.5  # ESPIRiT maps do not explain all of the real data, but most of it
    assert torch.isfinite(batch.target).all() and batch.target.abs().max() > 0.5


def test_run_pun_rows_cover_every_method_and_test_set_and_share_one_initialization():
    result = run_pun(tiny_config(brain=None))
    evals = ["in_dist", *[s for s in SHIFTS if s != "shift_brain"]]
    assert [(r["method"], r["eval"]) for r in result.rows] == [(m, e) for m in (DENSE, "pun", "random") for e in evals]
    for row in result.rows:
        assert set(row) == {"method", "density", "eval", "psnr", "ssim"}
        assert row["density"] == (1.0 if row["method"] == DENSE else 0.25)
        assert 0 < row["psnr"] < 80 and -1 <= row["ssim"] <= 1
    assert result.methods["pun"]["kept_density"] == pytest.approx(0.25, abs=1e-3)
    assert result.methods[DENSE]["kept_density"] == 1.0
    assert list(result.zero_filled) == evals and all(0 < v["psnr"] < 80 for v in result.zero_filled.values())
    table = summarize(result.rows)
    dense_shift = sum(r["psnr"] for r in result.rows if r["method"] == DENSE and r["eval"] != "in_dist") / 4
    assert table[DENSE]["shift_psnr"] == pytest.approx(dense_shift)
    assert table["pun"]["delta_shift_psnr"] == pytest.approx(table["pun"]["shift_psnr"] - dense_shift)


def test_shifted_test_sets_differ_from_the_training_distribution_in_one_factor_each():
    config = tiny_config()
    base, sets = config.train_data(), config.test_data()
    changed = {name: [k for k, v in vars(data).items() if getattr(base, k) != v and k != "num_slices"]
               for name, data in sets.items()}
    assert changed == {"in_dist": [], "shift_accel": ["acceleration"], "shift_mask": ["mask"],
                       "shift_noise": ["snr_db"], "shift_family": ["family"]}
    assert sets["shift_mask"].mask == "random" and copy.deepcopy(config).mask == "equispaced"


def test_cli_runs_end_to_end_at_a_tiny_size(tmp_path, capsys):
    out = tmp_path / "pun"
    status = cli_main(["pun", "--density", "0.2", "--methods", "snip,random", "--steps", "1", "--search-steps", "1",
                       "--image-size", "12", "--coils", "2", "--slices", "2", "--test-slices", "1", "--batch-size", "1",
                       "--num-iter", "1", "--cg-iter", "1", "--channels", "4", "--brain", "", "--device", "cpu",
                       "--no-progress", "--out", str(out)])
    assert status == 0
    written = json.loads((out / "pun.json").read_text())
    assert {row["method"] for row in written["rows"]} == {DENSE, "snip", "random"}
    assert len(written["rows"]) == 3 * 5
    assert (out / "snip" / "checkpoint.pt").is_file()
    assert "mean shift" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--density", "1.5"], "density"),
    (["--density", "0"], "density"),
    (["--methods", "pun,obd"], "methods"),
    (["--methods", ","], "methods"),
])
def test_cli_refuses_bad_input(tmp_path, capsys, argv, message):
    assert cli_main(["pun", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_config_refuses_a_shift_equal_to_the_training_setting():
    with pytest.raises(ValueError, match="shift_acceleration"):
        tiny_config(shift_acceleration=4).check()
    with pytest.raises(ValueError, match="image_size"):
        tiny_config(image_size=4).check()


def test_cli_config_file_and_overrides_reach_the_settings(tmp_path, monkeypatch, capsys):
    import mbdlfast.experiments.pun as pun_module

    class Stop(Exception):
        pass

    seen = []

    def fake_run_pun(config, out):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(pun_module, "run_pun", fake_run_pun)
    config = tmp_path / "pun.yaml"
    config.write_text("methods: [snip, random]\ndensity: 0.3\nimage_size: 16\nshift_snr_db: 10\n"
                      "model_kwargs: {num_iter: 2, cg_iter: 3}\n")
    with pytest.raises(Stop):
        cli_main(["pun", "--config", str(config), "--channels", "8", "--density", "0.2", "--brain", "",
                  "--out", str(tmp_path / "out"), "seed=4", "methods=pun,grasp"])
    settings = seen[-1]
    assert isinstance(settings, PunConfig) and settings.out == str(tmp_path / "out")
    assert (settings.methods, settings.density, settings.image_size, settings.shift_snr_db, settings.seed) == (
        ("pun", "grasp"), 0.2, 16, 10.0, 4)
    assert settings.model_kwargs == {"num_iter": 2, "cg_iter": 3, "prior_kwargs": {"channels": 8}}
    assert settings.brain is None and settings.progress is True and settings.steps == 200
    for extra, message in ((["bogus=1"], "unknown setting 'bogus'"), (["density=lots"], "density: expected"),
                           ([], "out: required")):
        capsys.readouterr()
        assert cli_main(["pun", "--config", str(config), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mbdlfast pun: error:") and err.count("\n") == 1 and message in err, err
