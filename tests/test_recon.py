"""``mbdlfast recon`` (library and CLI): fastMRI-layout outputs, the training-style pipeline, cfl/npy
inputs, bad input (exit 2, one line, nothing written), torchrun sharding; and ``mbdlfast bench``."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mbdlfast.cli import main as cli_main
from mbdlfast.data.cfl import write_cfl
from mbdlfast.data.synthetic import write_fastmri_h5, write_synthetic_fastmri_folder
from mbdlfast.data.volumes import load_volumes
from mbdlfast.training import ModelConfig, build_model, load_checkpoint, load_config, save_checkpoint
from mbdlfast.physics import espirit, masks
from mbdlfast.physics.espirit_maps import calibration_width
from mbdlfast.physics.linalg import cg_sense
from mbdlfast.physics.sense import SenseOperator
from mbdlfast.reconstruct import ReconSettings, Reconstructor, centre_lines

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_DEQ = {"prior_kwargs": {"n_resblocks": 1, "n_feats": 8}, "solver_kwargs": {"max_iter": 4}}
HEIGHT, WIDTH, COILS = 24, 32, 2
CENTRE = ["--center-fraction", "0.375"]  # 12 calibration lines: the coil maps need at least 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder of 3 synthetic fastMRI volumes (2 slices each) and a tiny random DEQ checkpoint."""
    root = tmp_path_factory.mktemp("recon")
    write_synthetic_fastmri_folder(root / "data", 3, 2, HEIGHT, WIDTH, COILS, seed=3)
    torch.manual_seed(0)
    model, _ = build_model("deq", TINY_DEQ)
    save_checkpoint(root / "deq.pt", model, ModelConfig("deq", TINY_DEQ))
    return root


def recon(setup, out, *extra, data=None, model=None) -> int:
    data = data if data is not None else setup / "data"
    model = model if model is not None else setup / "deq.pt"
    return cli_main(["recon", "--model", str(model), "--data", str(data), "--out", str(out),
                     "--no-progress", *CENTRE, *extra])


def read_output(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(path) as hf:
        return hf["reconstruction"][()], hf["mask"][()], dict(hf.attrs)


def read_report(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def test_recon_writes_fastmri_h5_json_and_png_per_volume(setup, tmp_path):
    assert recon(setup, tmp_path / "out", "--acceleration", "2") == 0
    names = sorted(p.stem for p in (setup / "data").iterdir())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{n}.{suffix}" for n in names for suffix in ("h5", "json", "png"))  # no temporaries left
    image, mask, attrs = read_output(tmp_path / "out" / f"{names[0]}.h5")
    assert image.dtype == np.float32 and image.shape == (2, HEIGHT, WIDTH) and (image >= 0).all() and image.max() > 0
    assert mask.tolist() == masks.equispaced(WIDTH, 2, 0.375, seed=0).tolist()
    assert attrs["acceleration"] == 2 and attrs["center_fraction"] == 0.375 and attrs["model"] == "deq"
    assert attrs["sampling"] == "retrospective" and attrs["checkpoint"] == str((setup / "deq.pt").resolve())
    assert attrs["max"] == pytest.approx(image.max()) and attrs["norm"] == pytest.approx(np.linalg.norm(image))
    assert attrs["mbdlfast_version"] and attrs["patient_id"].startswith("synthetic")
    # every reconstruction says whether its solver converged
    assert attrs["solver"] == "anderson" and list(attrs["iterations"]) and len(attrs["solver_status"]) == 2
    assert attrs["converged"] == all(s == "converged" for s in attrs["solver_status"])
    assert np.isfinite(attrs["psnr"]) and 0 < attrs["ssim"] <= 1
    png = (tmp_path / "out" / f"{names[0]}.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_the_report_has_the_classical_baselines_beside_the_network(setup, tmp_path, capsys):
    volume = setup / "data" / "synthetic_brain_000.h5"
    assert recon(setup, tmp_path / "out", data=volume) == 0
    printed = capsys.readouterr().out
    report = read_report(tmp_path / "out" / "synthetic_brain_000.h5")
    names = [method["name"] for method in report["methods"]]
    assert names[0] == "zero-filled" and names[1].startswith("CG-SENSE (lambda") and names[3] == "deq"
    assert names[2].startswith("l1-wavelet (lambda")
    for method in report["methods"]:
        assert len(method["metrics"]["psnr"]) == 2 and len(method["solver"]["status"]) == 2
        assert method["name"] in printed
    cg = report["methods"][1]
    assert cg["solver"]["solver"].startswith("CG-SENSE") and cg["mean"]["psnr"] > report["methods"][0]["mean"]["psnr"]
    protocol = report["protocol"]
    assert protocol["reference"].startswith("RSS") and "calibration square the mask keeps" in protocol["maps"]
    assert protocol["validation"].startswith("synthetic brain slices")
    assert f"{protocol['lambdas']['CG-SENSE']['lambda']:g})" in names[1]
    assert f"{protocol['lambdas']['l1-wavelet']['lambda']:g})" in names[2]
    assert set(protocol["lambdas"]["CG-SENSE"]["validation_psnr"]) == {"0.0", "0.0001", "0.0003", "0.001", "0.003",
                                                                     "0.01", "0.03", "0.1"}
    assert report["torch"] and report["torch_pruning"]


def test_lambdas_are_chosen_on_validation_data_not_on_the_test_volume(setup, tmp_path):
    """The λ choices see only the validation slices: two different test volumes get the same λ and scores."""
    lambdas = []
    for name in ("synthetic_brain_000", "synthetic_brain_002"):
        assert recon(setup, tmp_path / "out", data=setup / "data" / f"{name}.h5") == 0
        lambdas.append(read_report(tmp_path / "out" / f"{name}.h5")["protocol"]["lambdas"])
    assert lambdas[0] == lambdas[1]
    # a given validation volume changes the choice's data (and is checked for its size)
    assert recon(setup, tmp_path / "val", "--validation", str(setup / "data" / "synthetic_brain_001.h5"),
                 data=setup / "data" / "synthetic_brain_000.h5") == 0
    assert read_report(tmp_path / "val" / "synthetic_brain_000.h5")["protocol"]["lambdas"] != lambdas[0]


def test_recon_follows_the_evaluation_protocol(setup):
    """Built by hand: the mask of the training function, ESPIRiT maps from the calibration square the
    mask keeps (undersampled data only), the max|Aᴴy| scale; the model called directly."""
    checkpoint = load_checkpoint(setup / "deq.pt")
    reconstructor = Reconstructor(checkpoint, setup / "deq.pt", ReconSettings(batch_size=2, center_fraction=0.375,
                                                                             baselines=False))
    volume = load_volumes(setup / "data")[0]
    result = reconstructor.reconstruct(volume)
    mask = masks.equispaced(WIDTH, 4, 0.375, seed=0)
    side = calibration_width(mask, (HEIGHT, WIDTH))
    assert torch.equal(result.sampling.mask, mask) and result.sampling.calibration == side >= 12
    for index in range(volume.num_slices):
        kspace = volume.kspace[index] * mask
        maps = espirit(kspace, calib_width=side)
        scale = SenseOperator(maps, mask).A_adjoint(kspace[None]).abs().max()
        with torch.no_grad():
            expected = (checkpoint.model(kspace[None] / scale, SenseOperator(maps[None], mask[None])).abs() * scale)[0]
        torch.testing.assert_close(torch.from_numpy(result.image[index]), expected, rtol=1e-4,
                                   atol=1e-5 * float(scale))


def test_retrospective_reconstruction_never_sees_the_samples_the_mask_drops(setup, tmp_path):
    """Replacing every k-space sample outside the retrospective mask changes the reference only:
    the reconstruction (maps, scale, network input) is the same bit for bit."""
    with h5py.File(setup / "data" / "synthetic_brain_000.h5") as hf:
        kspace = hf["kspace"][()]
    dropped = ~masks.equispaced(WIDTH, 4, 0.375, seed=0).numpy()
    altered = kspace.copy()
    altered[..., dropped] = np.random.default_rng(0).standard_normal(altered[..., dropped].shape) * 1e3
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "v.npy", kspace)
    np.save(tmp_path / "b" / "v.npy", altered)
    for name in ("a", "b"):
        assert recon(setup, tmp_path / f"out_{name}", "--no-baselines", data=tmp_path / name) == 0
    np.testing.assert_array_equal(read_output(tmp_path / "out_b" / "v.h5")[0], read_output(tmp_path / "out_a" / "v.h5")[0])
    assert read_output(tmp_path / "out_b" / "v.h5")[2]["psnr"] != read_output(tmp_path / "out_a" / "v.h5")[2]["psnr"]


@pytest.mark.parametrize("fraction", ["0", "0.1"])
def test_retrospective_mask_without_enough_calibration_lines_is_a_clear_error(setup, tmp_path, capsys, fraction):
    status = cli_main(["recon", "--model", str(setup / "deq.pt"), "--data", str(setup / "data" / "synthetic_brain_000.h5"),
                       "--out", str(tmp_path / "out"), "--no-progress", "--center-fraction", fraction])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "center_fraction" in err and "need at least 6x6" in err, err
    assert not (tmp_path / "out").exists()  # a failed run leaves no (empty) output folder


def test_defaults_come_from_the_checkpoints_training_settings(setup, tmp_path):
    config = load_config(overrides={"model.name": "deq", "model.kwargs": TINY_DEQ, "data.acceleration": 2,
                                    "data.center_fraction": 0.375, "data.mask": "random"})
    save_checkpoint(tmp_path / "trained.pt", load_checkpoint(setup / "deq.pt").model, config)
    volume = setup / "data" / "synthetic_brain_002.h5"
    assert cli_main(["recon", "--model", str(tmp_path / "trained.pt"), "--data", str(volume),
                     "--out", str(tmp_path / "out"), "--no-progress", "--seed", "7"]) == 0
    _, mask, attrs = read_output(tmp_path / "out" / "synthetic_brain_002.h5")
    assert attrs["acceleration"] == 2 and attrs["center_fraction"] == 0.375
    assert mask.tolist() == masks.random(WIDTH, 2, 0.375, seed=7).tolist()


def test_shipped_weights_by_name(setup, tmp_path):
    volume = setup / "data" / "synthetic_brain_000.h5"
    for name in ("deq", "varnet"):
        assert recon(setup, tmp_path / name, "--no-baselines", data=volume, model=name) == 0
        attrs = read_output(tmp_path / name / "synthetic_brain_000.h5")[2]
        assert attrs["model"] == name and attrs["checkpoint"].endswith(f"{name}_small.pt")
    assert attrs["solver"] == "unrolled cascades" and attrs["converged"]


def test_output_follows_the_data_scale(setup, tmp_path):
    """Normalisation is undone: 10x the k-space gives 10x the image (ESPIRiT maps are scale-free)."""
    with h5py.File(setup / "data" / "synthetic_brain_000.h5") as hf:
        kspace = hf["kspace"][()]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "v.npy", kspace)
    np.save(tmp_path / "b" / "v.npy", kspace * 10)
    assert recon(setup, tmp_path / "out_a", "--no-baselines", data=tmp_path / "a") == 0
    assert recon(setup, tmp_path / "out_b", "--no-baselines", data=tmp_path / "b") == 0
    small, _, _ = read_output(tmp_path / "out_a" / "v.h5")
    large, _, _ = read_output(tmp_path / "out_b" / "v.h5")
    np.testing.assert_allclose(large, 10 * small, rtol=1e-4, atol=1e-5 * large.max())


def test_npy_and_cfl_inputs_match_the_h5_input(setup, tmp_path):
    source = setup / "data" / "synthetic_brain_001.h5"
    with h5py.File(source) as hf:
        kspace = hf["kspace"][()]
    np.save(tmp_path / "vol.npy", kspace)
    write_cfl(tmp_path / "one", np.moveaxis(kspace[1], 0, -1))  # BART [H W C] of slice 1
    for data in (source, tmp_path / "vol.npy", tmp_path / "one.cfl"):
        assert recon(setup, tmp_path / "out", "--no-baselines", data=data) == 0
    reference, _, _ = read_output(tmp_path / "out" / "synthetic_brain_001.h5")
    from_npy, _, _ = read_output(tmp_path / "out" / "vol.h5")
    from_cfl, _, attrs = read_output(tmp_path / "out" / "one.h5")
    np.testing.assert_array_equal(from_npy, reference)
    np.testing.assert_allclose(from_cfl[0], reference[1], rtol=1e-5, atol=1e-6 * reference.max())
    assert "patient_id" not in attrs and (tmp_path / "out" / "one.png").is_file()


def test_the_output_is_cropped_to_the_headers_recon_size(setup, tmp_path):
    kspace = setup_kspace(tmp_path, WIDTH)
    (tmp_path / "data").mkdir()
    write_fastmri_h5(tmp_path / "data" / "cropped.h5", kspace, recon_size=(16, 20))
    assert recon(setup, tmp_path / "out", "--no-baselines", data=tmp_path / "data") == 0
    image, _, attrs = read_output(tmp_path / "out" / "cropped.h5")
    assert image.shape == (1, 16, 20)
    assert attrs["max"] == pytest.approx(image.max()) and attrs["norm"] == pytest.approx(np.linalg.norm(image))


def test_undersampled_data_keep_their_own_sampling(setup, tmp_path):
    mask = np.zeros(WIDTH, dtype=bool)
    mask[8:24] = True  # 16 ACS lines around column 16
    mask[::5] = True
    kspace = setup_kspace(tmp_path, WIDTH) * mask
    (tmp_path / "data").mkdir()
    write_fastmri_h5(tmp_path / "data" / "under.h5", kspace)
    assert recon(setup, tmp_path / "out", data=tmp_path / "data") == 0
    image, used, attrs = read_output(tmp_path / "out" / "under.h5")
    assert used.tolist() == mask.tolist() and attrs["sampling"] == "acquired" and attrs["mask_kind"] == "1D lines"
    assert attrs["acceleration"] == pytest.approx(WIDTH / mask.sum()) and attrs["center_fraction"] == 16 / WIDTH
    assert image.shape == (1, HEIGHT, WIDTH) and np.isfinite(image).all() and image.max() > 0
    assert "psnr" not in attrs  # no fully sampled reference: no metrics


def test_2d_undersampled_data_are_reconstructed_with_their_own_2d_mask(setup, tmp_path):
    pattern = masks.poisson_disc((HEIGHT, WIDTH), 2, calib=(12, 12), seed=1)
    assert pattern.any(dim=0).all()  # every column holds samples: a column test would call it fully sampled
    np.save(tmp_path / "poisson.npy", setup_kspace(tmp_path, WIDTH) * pattern.numpy())
    assert recon(setup, tmp_path / "out", data=tmp_path / "poisson.npy") == 0
    _, used, attrs = read_output(tmp_path / "out" / "poisson.h5")
    assert used.shape == (HEIGHT, WIDTH) and (used == pattern.numpy()).all()
    assert attrs["sampling"] == "acquired" and attrs["mask_kind"] == "2D pattern" and attrs["num_low_frequencies"] >= 12
    assert "center_fraction" not in attrs


def test_the_real_poisson_disc_brain_keeps_its_acquired_2d_sampling(tmp_path, shared_data):
    """SigPy's tutorial brain (Poisson disc, ~R 8): detected as undersampled, reconstructed with its
    own 2D mask. Against CG-SENSE on that true mask, the shipped DEQ's result is closer than the
    zero-filled image, and closer than what it gives from the data re-undersampled with lines (what
    happened when such data passed for fully sampled)."""
    path = shared_data / "mri" / "sigpy-mri-tutorial" / "cartesian_ksp.npy"
    kspace = torch.from_numpy(np.load(path))
    pattern = (kspace != 0).any(dim=0)
    assert cli_main(["recon", "--model", "deq", "--data", str(path), "--out", str(tmp_path), "--no-progress"]) == 0
    image, used, attrs = read_output(tmp_path / "cartesian_ksp.h5")
    assert used.shape == (230, 180) and (used == pattern.numpy()).all()
    assert attrs["sampling"] == "acquired" and attrs["mask_kind"] == "2D pattern"
    assert attrs["acceleration"] == pytest.approx(230 * 180 / int(pattern.sum()))
    # CG-SENSE on the true mask, computed here from scratch: maps from its 24x24 calibration square
    maps = espirit(kspace, calib_width=24)
    op = SenseOperator(maps, pattern.float(), mask_is_2d=True)
    cg, _ = cg_sense(op, kspace[None], lam=1e-3 * float(op.A_adjoint(kspace[None]).abs().max()), max_iter=60)
    zero_filled = op.A_adjoint(kspace[None])[0].abs()
    truth = cg[0].abs()

    def nrmse(estimate):
        estimate = torch.as_tensor(estimate, dtype=torch.float32)
        scaled = estimate * (estimate * truth).sum() / estimate.square().sum()
        return float((scaled - truth).norm() / truth.norm())

    lines = masks.equispaced(180, 4, 0.08, seed=0)
    np.save(tmp_path / "lines.npy", (kspace * pattern * lines).numpy())
    assert cli_main(["recon", "--model", "deq", "--data", str(tmp_path / "lines.npy"), "--out", str(tmp_path),
                     "--no-progress", "--no-baselines"]) == 0
    re_undersampled = read_output(tmp_path / "lines.h5")[0]
    errors = {"own mask": nrmse(image[0]), "zero-filled": nrmse(zero_filled), "re-undersampled": nrmse(re_undersampled[0])}
    assert errors["own mask"] < 0.85 * errors["zero-filled"] and errors["own mask"] < 0.85 * errors["re-undersampled"], errors


@pytest.mark.parametrize("acs, message", [(4, "need at least 6x6"), (8, "ESPIRiT found no coil sensitivities")])
def test_too_small_acquired_calibration_is_bad_input(setup, tmp_path, capsys, acs, message):
    mask = np.zeros(WIDTH, dtype=bool)
    mask[16 - acs // 2:16 + acs // 2] = True
    mask[::3] = True
    mask[[15 - acs // 2, 16 + acs // 2]] = False  # the ACS band is exactly ``acs`` lines
    kspace = np.asarray(setup_kspace(tmp_path, WIDTH)) * mask
    if acs == 8:  # white noise in every coil: no sensitivities for ESPIRiT to find
        rng = np.random.default_rng(0)
        kspace = (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)) * mask
    np.save(tmp_path / "under.npy", kspace)
    assert recon(setup, tmp_path / "out", data=tmp_path / "under.npy") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def setup_kspace(tmp_path, width):
    path = write_synthetic_fastmri_folder(tmp_path / "full", 1, 1, HEIGHT, width, COILS, seed=5)[0]
    with h5py.File(path) as hf:
        return hf["kspace"][()]


def test_structurally_pruned_checkpoint(setup, tmp_path):
    from mbdlfast.training.checkpoint import save_pruned
    from mbdlfast.prune import structured

    kwargs = {"prior_kwargs": {"n_resblocks": 1, "n_feats": 16}, "solver_kwargs": {"max_iter": 4}}
    dense, _ = build_model("deq", kwargs)
    example = (torch.zeros(1, COILS, HEIGHT, WIDTH, dtype=torch.complex64),
               SenseOperator(torch.ones(1, COILS, HEIGHT, WIDTH, dtype=torch.complex64),
                             torch.ones(1, WIDTH, dtype=torch.bool)))
    pruned = structured.prune_structured(dense, example, 0.5)
    assert structured.count_params(pruned) < structured.count_params(dense)
    save_pruned(pruned, tmp_path / "pruned.pt", "deq", kwargs)
    volume = setup / "data" / "synthetic_brain_000.h5"
    assert recon(setup, tmp_path / "out", "--no-baselines", data=volume, model=tmp_path / "pruned.pt") == 0
    image, _, attrs = read_output(tmp_path / "out" / "synthetic_brain_000.h5")
    assert image.shape == (2, HEIGHT, WIDTH) and np.isfinite(image).all() and attrs["model"] == "deq"


def test_centre_lines():
    assert centre_lines(torch.tensor([1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)) == 3
    assert centre_lines(torch.tensor([1, 1, 0, 1], dtype=torch.bool)) == 0


# ------------------------------------------------------------------------------------- batches of volumes


def test_a_bad_file_in_a_folder_is_reported_and_skipped(setup, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted((setup / "data").iterdir())[:2]:
        (data / path.name).write_bytes(path.read_bytes())
    (data / "broken.h5").write_bytes(b"not an h5 file at all")
    status = recon(setup, tmp_path / "out", "--no-baselines", data=data)
    assert status == 1 and "skipped broken.h5: data:" in caplog.text and "1 volume(s) failed" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").glob("*.h5")) == ["synthetic_brain_000.h5", "synthetic_brain_001.h5"]


def test_skip_existing_resumes_a_batch(setup, tmp_path):
    out = tmp_path / "out"
    assert recon(setup, out, "--no-baselines") == 0
    (out / "synthetic_brain_001.h5").unlink()
    kept = {name: (out / name).stat().st_mtime_ns for name in ("synthetic_brain_000.h5", "synthetic_brain_002.h5")}
    assert recon(setup, out, "--no-baselines", "--skip-existing") == 0
    assert (out / "synthetic_brain_001.h5").is_file()
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept


def test_a_killed_run_leaves_temporaries_that_the_next_run_removes(setup, tmp_path):
    """A recon killed with SIGKILL while writing its h5 leaves a temporary; the next recon into the same
    folder removes it (and nothing of the kind is left)."""
    out = tmp_path / "out"
    out.mkdir()
    script = ("import os, sys\nfrom mbdlfast.outputs import atomic_path\n"
              "with atomic_path(sys.argv[1]) as temporary:\n    temporary.write_bytes(b'half')\n    os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", script, str(out / "synthetic_brain_000.h5")], check=False)
    assert len(list(out.glob(".mbdlfast-tmp.*"))) == 1
    assert recon(setup, out, "--no-baselines", data=setup / "data" / "synthetic_brain_000.h5") == 0
    assert not list(out.glob(".mbdlfast-tmp.*")) and (out / "synthetic_brain_000.h5").is_file()


# ------------------------------------------------------------------------------------------ bad input


def _foreign_checkpoint(setup, path, **changes):
    payload = torch.load(setup / "deq.pt", weights_only=True)
    for key, value in changes.items():
        if key == "model_name":
            payload["model"]["name"] = value
        elif key == "n_feats":
            payload["model"]["kwargs"]["prior_kwargs"]["n_feats"] = value
        else:
            payload[key] = value
    torch.save(payload, path)
    return path


def _no_kspace(tmp_path):
    with h5py.File(tmp_path / "in" / "nokspace.h5", "w") as hf:
        hf.create_dataset("reconstruction_rss", data=np.ones((1, 4, 4), np.float32))
    return ["--data", str(tmp_path / "in" / "nokspace.h5")]


BAD_INPUT = {
    "missing data": (lambda s, t: ["--data", str(t / "in" / "absent")], "does not exist"),
    "h5 without kspace": (lambda s, t: _no_kspace(t), "no 'kspace'"),
    "not a checkpoint": (lambda s, t: ["--model", str(t / "in" / "data.npy")], "not a readable checkpoint"),
    "missing checkpoint": (lambda s, t: ["--model", str(t / "in" / "none.pt")], "does not exist"),
    "state dict only": (lambda s, t: ["--model", str(torch.save({"w": torch.ones(2)}, t / "in" / "sd.pt")
                                                  or t / "in" / "sd.pt")], "not an mbdlfast checkpoint"),
    "another model": (lambda s, t: ["--model", str(_foreign_checkpoint(s, t / "in" / "m.pt", model_name="unet3d"))],
                      "unet3d"),
    "another version": (lambda s, t: ["--model", str(_foreign_checkpoint(s, t / "in" / "v.pt", format_version=99))],
                        "format version 99"),
    "weights of another size": (lambda s, t: ["--model", str(_foreign_checkpoint(s, t / "in" / "w.pt", n_feats=16))],
                                "do not fit"),
    "acceleration 0": (lambda s, t: ["--acceleration", "0"], "acceleration"),
    "acceleration above width": (lambda s, t: ["--acceleration", str(WIDTH + 1)], "leaves no sampled lines"),
    "acceleration not a number": (lambda s, t: ["--acceleration", "four"], "acceleration"),
    "centre fraction 1": (lambda s, t: ["--center-fraction", "1"], "center_fraction"),
    "unwritable output": (lambda s, t: ["--out", str(t / "in" / "data.npy" / "sub")], "out: cannot write"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(setup, tmp_path, capsys, case):
    make, message = BAD_INPUT[case]
    (tmp_path / "in").mkdir()
    with h5py.File(setup / "data" / "synthetic_brain_000.h5") as hf:
        np.save(tmp_path / "in" / "data.npy", hf["kspace"][()])
    args = {"--model": str(setup / "deq.pt"), "--data": str(tmp_path / "in" / "data.npy"),
            "--out": str(tmp_path / "out"), "--center-fraction": "0.375"}
    extra = make(setup, tmp_path)
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    argv = ["recon", "--no-progress", *[item for pair in args.items() for item in pair]]
    capsys.readouterr()
    try:
        status = cli_main(argv)
    except SystemExit as exit_:  # argparse's own errors (a flag of the wrong type)
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("mbdlfast recon: error:") and err.count("\n") == 1 and message in err, err
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # nothing (half-)written
    assert sorted(p.name for p in (tmp_path / "in").iterdir() if p.name.startswith(".")) == []


def test_output_folder_may_not_replace_the_input(setup, tmp_path, capsys):
    write_synthetic_fastmri_folder(tmp_path, 1, 1, HEIGHT, WIDTH, COILS)
    before = sorted(tmp_path.iterdir())
    assert recon(setup, tmp_path, data=tmp_path) == 2
    assert "would replace it" in capsys.readouterr().err and sorted(tmp_path.iterdir()) == before


def test_failure_while_writing_leaves_nothing_behind(setup, tmp_path, monkeypatch):
    import mbdlfast.reconstruct as reconstruct_module

    def broken_png(path, result, title):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reconstruct_module, "_write_png", broken_png)
    assert recon(setup, tmp_path / "out", data=setup / "data" / "synthetic_brain_000.h5") == 2
    assert not (tmp_path / "out").exists()  # no half-written file, and no empty folder of a failed run


# -------------------------------------------------------------------------------------------- torchrun


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


def test_torchrun_two_ranks_write_the_same_outputs_as_one_process(setup, tmp_path):
    """Bitwise equal: every process computes with one thread, as the ranks do (OMP_NUM_THREADS=1)."""
    args = ["recon", "--model", str(setup / "deq.pt"), "--data", str(setup / "data"), "--no-progress", *CENTRE, "--out"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main([*args, str(tmp_path / "single")]) == 0
    finally:
        torch.set_num_threads(threads)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
          "-m", "mbdlfast", *args, str(tmp_path / "ddp")])
    single = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert len(single) == 9 and sorted(p.name for p in (tmp_path / "ddp").iterdir()) == single
    for name in single:
        if name.endswith(".h5"):
            image, mask, attrs = read_output(tmp_path / "single" / name)
            other_image, other_mask, other_attrs = read_output(tmp_path / "ddp" / name)
            np.testing.assert_array_equal(other_image, image)
            np.testing.assert_array_equal(other_mask, mask)
            assert other_attrs.keys() == attrs.keys()
            for key, value in attrs.items():
                assert np.array_equal(other_attrs[key], value), key


# ----------------------------------------------------------------------------------------------- bench


def test_bench_help_lists_the_benchmarks_of_the_checkout(capsys):
    with pytest.raises(SystemExit) as caught:
        cli_main(["bench", "--help"])
    assert caught.value.code == 0
    listed = capsys.readouterr().out
    for script in (REPO_ROOT / "benchmarks").glob("bench_*.py"):
        assert f"  {script.stem[len('bench_'):]} " in listed


def test_bench_unknown_name_lists_what_exists(capsys):
    assert cli_main(["bench", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no benchmark 'nope'" in err and "sense" in err


def test_bench_passes_its_arguments_and_exit_status_through(tmp_path, monkeypatch, capfd):
    from mbdlfast.commands import bench

    (tmp_path / "common.py").write_text("")
    (tmp_path / "bench_echo.py").write_text('"""Echo."""\nimport sys\nprint(sys.argv[1:])\nsys.exit(3)\n')
    monkeypatch.setattr(bench, "BENCHMARKS_DIR", tmp_path)
    assert cli_main(["bench", "echo", "--quick", "--shapes", "4x8x8"]) == 3
    assert capfd.readouterr().out.strip() == "['--quick', '--shapes', '4x8x8']"


def test_bench_outside_a_source_checkout(tmp_path, monkeypatch, capsys):
    from mbdlfast.commands import bench

    monkeypatch.setattr(bench, "BENCHMARKS_DIR", tmp_path / "benchmarks")
    assert cli_main(["bench", "sense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "source checkout" in err


def test_config_file_flags_and_overrides_reach_the_settings(tmp_path, monkeypatch, capsys):
    import mbdlfast.reconstruct as reconstruct_module

    seen = {}

    def fake_reconstruct_files(checkpoint, data, out, settings, context):
        seen.update(paths=(checkpoint, data, out), settings=settings)
        return reconstruct_module.ReconRunResult()

    monkeypatch.setattr(reconstruct_module, "reconstruct_files", fake_reconstruct_files)
    config = tmp_path / "recon.yaml"
    config.write_text("model: a.pt\ndata: b.h5\nout: c\nacceleration: 8\nseed: 5\nbatch_size: 3\ndevice: cpu\n")
    argv = ["recon", "--config", str(config), "--seed", "6", "--no-progress", "batch_size=2", "center_fraction=0.04"]
    assert cli_main(argv) == 0
    settings = seen["settings"]
    assert isinstance(settings, ReconSettings) and seen["paths"] == ("a.pt", "b.h5", "c")
    assert (settings.acceleration, settings.center_fraction, settings.seed, settings.batch_size, settings.progress,
            settings.device) == (8, 0.04, 6, 2, False, "cpu")  # defaults < file < flags < key=value
    assert cli_main([*argv, "seed=7", "--model", "d.pt"]) == 0
    assert seen["settings"].seed == 7 and seen["paths"][0] == "d.pt"
    no_model = tmp_path / "no_model.yaml"
    no_model.write_text("data: b.h5\nout: c\n")
    for extra, message in ((["bogus=1"], "unknown setting 'bogus'"), (["batch_size=two"], "batch_size: expected"),
                           (["batch_size=0"], "batch_size"), (["--config", str(no_model)], "model: required")):
        capsys.readouterr()
        assert cli_main(["recon", "--config", str(config), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mbdlfast recon: error:") and err.count("\n") == 1 and message in err, err


def test_added_noise_reaches_the_data_and_the_report(setup, tmp_path):
    volume = setup / "data" / "synthetic_brain_000.h5"
    assert recon(setup, tmp_path / "clean", data=volume) == 0
    assert recon(setup, tmp_path / "noisy", "--noise-snr-db", "9", data=volume) == 0
    clean = read_report(tmp_path / "clean" / "synthetic_brain_000.h5")
    noisy = read_report(tmp_path / "noisy" / "synthetic_brain_000.h5")
    assert clean["sampling"]["added_noise_snr_db"] is None and noisy["sampling"]["added_noise_snr_db"] == 9.0
    zero_filled = [report["methods"][0] for report in (clean, noisy)]
    assert zero_filled[0]["name"] == "zero-filled" and zero_filled[1]["mean"]["psnr"] < zero_filled[0]["mean"]["psnr"] - 1
