"""Super-resolution of image files with a USRNet checkpoint: the library side of ``mbdlfast sr``.

Inputs are low-resolution colour images observed with a known blur kernel, scale and noise level
(USRNet is non-blind: it is told all three). With ``simulate`` the inputs are high-resolution
images instead: each is cropped to a multiple of the scale, degraded as in training and testing
(:func:`mbdlfast.data.sr_images.degrade`, noise seeded per image) and the result is scored against it
(:func:`mbdlfast.sr_metrics.sr_quality`), beside a bicubic baseline.

Kernels are named by :func:`resolve_kernel`: ``usrnet:N`` (the N-th of the twelve test kernels,
1..12: 4 isotropic, 4 anisotropic Gaussians, 4 motion), ``gaussian:W`` or ``gaussian:W1,W2,ANGLE``
(25×25), or a .npy / .mat file (``kernel_index`` picks one of several).

Per image ``<out>/<name>_sr.png`` (8-bit) and, with ``simulate``, ``<name>_lr.png``, ``<name>.json``
(PSNR / SSIM of the network and of bicubic) and ``<name>.png`` (the observation, bicubic, the
network and the reference side by side). Every file is written atomically.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mbdlfast._validation import check_int
from mbdlfast.data.sr_images import degrade, image_files, modcrop, read_rgb
from mbdlfast.outputs import atomic_path, write_json
from mbdlfast.physics.blur import BlurDownsample, check_noise_level
from mbdlfast.physics.blur_kernels import KERNEL_SIZE, gaussian_kernel, load_kernels, usrnet_test_kernels
from mbdlfast.sr_metrics import sr_quality

logger = logging.getLogger(__name__)

SR_MODELS = ("usrnet",)


@dataclass
class SRSettings:
    """How ``mbdlfast sr`` observes and restores its images (module docstring)."""

    scale: int = 2
    kernel: str = "usrnet:1"
    kernel_index: int = 0
    noise_level: float = 0.0
    simulate: bool = False
    seed: int = 0

    def __post_init__(self):
        check_int("scale", self.scale, minimum=1)
        check_int("kernel_index", self.kernel_index, minimum=0)
        check_noise_level(self.noise_level)
        check_int("seed", self.seed, minimum=0)


def resolve_kernel(spec: str, index: int = 0) -> torch.Tensor:
    """The float64 (n,n) kernel named by ``spec`` (module docstring); ValueError naming ``kernel``."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"kernel: expected usrnet:N, gaussian:W[,W2,ANGLE] or a .npy / .mat file, got {spec!r}")
    kind, _, argument = spec.partition(":")
    if kind == "usrnet" and argument:
        kernels = usrnet_test_kernels()
        if not argument.isdigit() or not 1 <= int(argument) <= len(kernels):
            raise ValueError(f"kernel: usrnet:N takes N in 1..{len(kernels)}, got {spec!r}")
        return kernels[int(argument) - 1]
    if kind == "gaussian" and argument:
        try:
            values = [float(value) for value in argument.split(",")]
        except ValueError:
            values = []
        if len(values) == 1:
            return gaussian_kernel(KERNEL_SIZE, values[0])
        if len(values) == 3:
            return gaussian_kernel(KERNEL_SIZE, (values[0], values[1]), values[2])
        raise ValueError(f"kernel: gaussian:W or gaussian:W1,W2,ANGLE takes numbers, got {spec!r}")
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"kernel: {spec!r} is neither usrnet:N, gaussian:... nor an existing .npy / .mat file")
    kernels = load_kernels(path)
    if index >= len(kernels):
        raise ValueError(f"kernel_index: {path} holds {len(kernels)} kernel(s), got index {index}")
    return kernels[index]


def aligned_bicubic(y: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling of (B,C,h,w) ``y`` on the sampling grid of the degradation: low-resolution
    pixel (i, j) sits at high-resolution pixel (s·i, s·j) (the top-left of its block, not its centre),
    so the baseline is not penalised by a sub-pixel shift. Clipped to [0, 1]."""
    height, width = y.shape[-2] * scale, y.shape[-1] * scale
    rows = torch.arange(height, dtype=y.dtype, device=y.device) / scale
    cols = torch.arange(width, dtype=y.dtype, device=y.device) / scale
    grid_y = 2 * rows / max(y.shape[-2] - 1, 1) - 1
    grid_x = 2 * cols / max(y.shape[-1] - 1, 1) - 1
    grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1).expand(y.shape[0], -1, -1, -1)
    return F.grid_sample(y, grid, mode="bicubic", padding_mode="border", align_corners=True).clamp(0.0, 1.0)


@torch.no_grad()
def super_resolve(model: torch.nn.Module, y: torch.Tensor, kernel: torch.Tensor, scale: int,
                  noise_level) -> torch.Tensor:
    """``model``'s (B,C,h·s,w·s) restoration of ``y`` observed with ``kernel``, ``scale`` and
    ``noise_level``, clipped to [0, 1]."""
    physics = BlurDownsample(kernel.to(y), scale, noise_level)
    return model(y, physics).clamp(0.0, 1.0)


def write_png(path, image: torch.Tensor) -> Path:
    """(3,H,W) in [0, 1] as an 8-bit PNG, atomically."""
    import skimage.io

    array = (image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    path = Path(path)
    with atomic_path(path) as temporary:
        skimage.io.imsave(temporary, array, check_contrast=False)  # the temporary name ends in .png
    return path


def _figure(path: Path, panels: dict[str, torch.Tensor], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for axis, (name, image) in zip(axes[0], panels.items()):
        axis.imshow(image.clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
        axis.set_title(name, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=9)
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def check_sr_model(model_name: str, source: str) -> None:
    if model_name not in SR_MODELS:
        raise ValueError(f"model: {source} holds a {model_name!r} model; super-resolution needs one of {SR_MODELS}")


def super_resolve_files(model: torch.nn.Module, model_name: str, inputs, out, settings: SRSettings, *,
                        device: torch.device | str = "cpu", progress: bool = True) -> list[dict]:
    """Restore every image of ``inputs`` (a file or a folder) into ``out`` (module docstring); returns
    one record per image (its files and, with ``simulate``, its scores)."""
    from tqdm.auto import tqdm

    check_sr_model(model_name, "the checkpoint")  # before any output is written
    files = image_files(inputs)
    kernel = resolve_kernel(settings.kernel, settings.kernel_index).float()
    out = Path(out)
    model = model.to(device).eval()
    records = []
    for index, path in enumerate(tqdm(files, desc="sr", disable=not progress)):
        image = read_rgb(path).to(device)
        record = {"input": str(path), "scale": settings.scale, "kernel": settings.kernel,
                  "noise_level": settings.noise_level, "simulate": settings.simulate}
        if settings.simulate:
            reference = modcrop(image, settings.scale)[None]
            generator = torch.Generator().manual_seed(int(np.random.default_rng([settings.seed, index]).integers(2**63)))
            y = degrade(reference, kernel.to(device), settings.scale, settings.noise_level, generator)
        else:
            y = image[None]
        restored = super_resolve(model, y, kernel, settings.scale, settings.noise_level)
        record["sr"] = str(write_png(out / f"{path.stem}_sr.png", restored[0]))
        if settings.simulate:
            bicubic = aligned_bicubic(y, settings.scale)
            scores = {}
            for name, candidate in (("bicubic", bicubic), (model_name, restored)):
                psnr, ssim = sr_quality(reference, candidate, border=settings.scale)
                scores[name] = {"psnr": float(psnr[0]), "ssim": float(ssim[0])}
            record.update(lr=str(write_png(out / f"{path.stem}_lr.png", y[0])), metrics=scores)
            observed = F.interpolate(y, scale_factor=settings.scale, mode="nearest")
            panels = {"observation (nearest)": observed[0], **{
                f"{name}: {score['psnr']:.2f} dB / {score['ssim']:.3f}": candidate[0]
                for (name, score), candidate in zip(scores.items(), (bicubic, restored))}, "reference": reference[0]}
            _figure(out / f"{path.stem}.png", panels, f"{path.name}: x{settings.scale}, kernel {settings.kernel}, "
                                                      f"noise {settings.noise_level:g}")
            record["figure"] = str(out / f"{path.stem}.png")
            write_json(out / f"{path.stem}.json", {**record, "settings": asdict(settings)})
            logger.info("%s: %s", path.name, json.dumps(scores))
        records.append(record)
    return records
