"""The demo's figures: reconstruction grid, error maps, and speed-up and PSNR against the pruning ratio.

Every PNG is drawn to a temporary file in the output folder and renamed into place, so an
interrupted run leaves no half-written image.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

ERROR_GAIN = 5  # error maps are shown ERROR_GAIN times brighter than the images


def _save(figure, path: Path) -> Path:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(descriptor)
    try:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _panels(out: Path, name: str, title: str, panels: dict[str, torch.Tensor], vmax: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
    for axis, (label, image) in zip(axes[0], panels.items()):
        axis.imshow(image.numpy(), cmap="gray", vmin=0, vmax=vmax)
        axis.set_title(label, fontsize=8)
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    try:
        return _save(figure, out / name)
    finally:
        plt.close(figure)


def _curves(out: Path, name: str, rows, series: dict[str, str], ylabel: str, baseline: dict[str, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optimized = sorted((row for row in rows if row.pipeline == "optimized"), key=lambda row: row.ratio)
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    ratios = [row.ratio for row in optimized]
    for attribute, label in series.items():
        axis.plot(ratios, [getattr(row, attribute) for row in optimized], marker="o", label=label)
    for label, value in baseline.items():
        axis.axhline(value, color="gray", linestyle="--", linewidth=1, label=label)
    axis.set_xlabel("pruning ratio (fraction of channels removed)")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    try:
        return _save(figure, out / name)
    finally:
        plt.close(figure)


def write_demo_figures(out: Path, rows, images: dict[str, torch.Tensor], *, reference: torch.Tensor,
                       zero_filled: torch.Tensor, reference_name: str) -> list[Path]:
    """Write the four PNGs for the first test slice and the table ``rows``; returns their paths."""
    first = {name: image[0].abs().float().cpu() for name, image in images.items()}
    truth = reference[0].abs().float().cpu()
    vmax = float(truth.max())
    shown = {"reference": truth, "zero-filled": zero_filled[0].abs().float().cpu(), **first}
    errors = {name: (image - truth).abs() * ERROR_GAIN for name, image in shown.items() if name != "reference"}
    baseline = next(row for row in rows if row.pipeline == "baseline")
    return [
        _panels(out, "recon_grid.png", f"reconstructions (reference: {reference_name})", shown, vmax),
        _panels(out, "error_maps.png", f"|error| x{ERROR_GAIN} against {reference_name}", errors, vmax),
        _curves(out, "speedup_vs_ratio.png", rows, {"speedup_vs_baseline": "vs dense baseline (naive operator)",
                                                    "speedup_vs_dense": "vs dense optimized"},
                "speed-up per slice (same solver tolerance)", {"1x": 1.0}),
        _curves(out, "psnr_vs_ratio.png", rows, {"psnr": "optimized pipeline (dense at ratio 0)"},
                "PSNR (dB)", {"dense baseline": baseline.psnr}),
    ]
