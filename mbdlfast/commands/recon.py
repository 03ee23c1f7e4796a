"""``mbdlfast recon``: reconstruct k-space volumes with a checkpoint into fastMRI-layout h5 and PNG."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from mbdlfast.commands import EXIT_SOME_FAILED, Command, add_settings_arguments, settings_from_arguments

EXAMPLES = """\
examples (from the repository root, with the shared data in ../shared/data):
  mbdlfast recon --model deq --data ../shared/data/mri/auto-espirit/brain_clean.cfl --out recons
  mbdlfast recon --model deq --data ../shared/data/mri/sigpy-mri-tutorial/cartesian_ksp.npy --out recons
  mbdlfast recon --model varnet --data ../shared/data/mri/auto-espirit/brain_clean.cfl --out recons/r8 --acceleration 8 --center-fraction 0.12
  mbdlfast recon --model deq --data ../shared/data/mri/sigpy-mri-tutorial --out recons --skip-existing
  mbdlfast recon --model deq --data ../shared/data/mri/auto-espirit/brain_clean.cfl --out recons/seed3 --no-baselines acceleration=8 seed=3 center_fraction=0.1
  torchrun --nproc_per_node 2 -m mbdlfast recon --model deq --data ../shared/data/mri/sigpy-mri-tutorial --out recons/ddp --no-progress --no-baselines

model: a checkpoint file (dense or pruned, from train / prune / finetune) or the name of shipped
weights (deq, varnet). data: a fastMRI h5 file, a BART .cfl file ([H W C]), a .npy of complex
k-space (C,H,W) or (S,C,H,W), or a folder of these. Fully sampled data are undersampled
retrospectively (equispaced lines plus a fully sampled centre, as in training; R and the centre
fraction default to the checkpoint's training values) and have a reference; undersampled data keep
their own sampling, 1D lines or a 2D pattern. Coil maps come from the calibration square the mask
keeps. Beside the network, zero-filled, CG-SENSE and l1-wavelet (lambdas chosen on --validation, default
synthetic slices with the same sampling) are reconstructed and, with a reference, scored.

Each volume gives <out>/<name>.h5 ('reconstruction' (S,H,W) float32 magnitude, 'mask', attrs with
the sampling, the solver's convergence and the metrics), <out>/<name>.json (quality and convergence
of every method) and <out>/<name>.png (the middle slice: reference, zero-filled, CG-SENSE, network,
error maps). In a folder, a volume that fails is reported and skipped and the exit status is 1;
--skip-existing resumes a batch. Under torchrun each rank reconstructs its share of the files.

settings: every flag sets one setting; --config (YAML) and key=value overrides use the same names:
model, data, out, acceleration, center_fraction, seed, batch_size, validation, baselines,
skip_existing, noise_snr_db, device, progress. Precedence: defaults < --config file < flags < key=value.
"""


@dataclass
class ReconRun:
    """The command-line level settings of ``mbdlfast recon``; the rest are those of
    :class:`mbdlfast.reconstruct.ReconSettings`. ``model``, ``data`` and ``out`` are required."""

    model: str | None = None
    data: str | None = None
    out: str | None = None
    device: str = "auto"


FLAGS = {
    "--model": ("model", "a checkpoint file (dense or pruned) or shipped weights: deq, varnet; required",
                {"metavar": "CKPT|NAME"}),
    "--data": ("data", "h5 / cfl / npy file or folder of volumes; required", {"metavar": "PATH"}),
    "--out": ("out", "output folder (created if needed); required", {"metavar": "DIR"}),
    "--acceleration": ("acceleration", "retrospective undersampling factor (default: the checkpoint's training "
                       "value)", {"metavar": "R"}),
    "--center-fraction": ("center_fraction", "fully sampled centre fraction (default: the checkpoint's training "
                          "value)", {"metavar": "F"}),
    "--seed": ("seed", "seed of the mask offset (default 0)"),
    "--batch-size": ("batch_size", "slices per model call (default 1)"),
    "--validation": ("validation", "fully sampled volume (the data's size) on which CG-SENSE's lambda is chosen "
                     "(default: synthetic slices with the same sampling)", {"metavar": "PATH"}),
    "--baselines": ("baselines", "reconstruct zero-filled and CG-SENSE beside the network (default on)",
                    {"action": argparse.BooleanOptionalAction}),
    "--skip-existing": ("skip_existing", "leave volumes whose <out>/<name>.h5 exists (resume a batch)",
                        {"action": "store_true"}),
    "--noise-snr-db": ("noise_snr_db", "add white Gaussian noise to the measured samples at this input SNR "
                       "(e.g. 9, the seed's Table 3; default none)", {"metavar": "DB"}),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--progress": ("progress", "tqdm progress bar on rank 0 (default on)", {"action": argparse.BooleanOptionalAction}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "recon")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.training.distributed import DistributedContext
    from mbdlfast.reconstruct import ReconSettings, reconstruct_files

    settings = settings_from_arguments(args, FLAGS, (ReconRun, ReconSettings), required=("model", "data", "out"))
    context = DistributedContext.from_environment(settings.device)
    try:
        result = reconstruct_files(settings.model, settings.data, settings.out, settings, context)
    finally:
        context.close()
    log = logging.getLogger("mbdlfast")
    log.info("wrote %d reconstruction(s) to %s%s", len(result.written), settings.out,
             f"; skipped {len(result.skipped)} existing" if result.skipped else "")
    if result.failed:
        log.error("%d volume(s) failed and were skipped: %s", len(result.failed), ", ".join(result.failed))
        return EXIT_SOME_FAILED
    return 0


COMMAND = Command("recon", "reconstruct k-space volumes (fastMRI h5, cfl, npy) with a checkpoint",
                  add_arguments, run, EXAMPLES)
