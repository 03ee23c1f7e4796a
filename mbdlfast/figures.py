"""The comparison figure of every quality report: reference, baselines and networks side by side.

With a fully sampled reference, the top row shows it and each method's magnitude image scaled by the
least-squares factor the metrics use (:func:`mbdlfast.evaluation.scaled_magnitude`), all on the
reference's grey scale, with PSNR / SSIM in the panel titles; the bottom row shows each method's
absolute error on one shared scale, with a colour bar. Without a reference (undersampled data) only
the images are shown, each on its own scale. PNGs are written atomically.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mbdlfast.evaluation import scaled_magnitude
from mbdlfast.outputs import atomic_path


def _magnitude(image: torch.Tensor) -> torch.Tensor:
    return image.detach().abs().float().cpu()


def comparison_figure(path, images: dict[str, torch.Tensor], *, reference: torch.Tensor | None = None,
                      reference_name: str = "reference", metrics: dict[str, dict[str, float]] | None = None,
                      title: str = "") -> Path:
    """Write the figure of ``images`` (name -> (H,W) complex or real) to ``path``; ``metrics`` maps a
    name to its {"psnr", "ssim"} for the titles. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = metrics or {}
    columns = len(images) + (reference is not None)
    rows = 2 if reference is not None else 1
    figure, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 2.7 * rows + 0.3), squeeze=False)
    if reference is not None:
        truth = _magnitude(reference)
        vmax = float(truth.max()) or 1.0
        shown = {name: scaled_magnitude(_magnitude(image)[None], truth[None])[0] for name, image in images.items()}
        errors = {name: (image - truth).abs() for name, image in shown.items()}
        error_max = max(float(torch.quantile(error.flatten(), 0.995)) for error in errors.values()) or vmax
        axes[0][0].imshow(truth.numpy(), cmap="gray", vmin=0, vmax=vmax)
        axes[0][0].set_title(f"reference\n{reference_name}", fontsize=7)
        axes[1][0].axis("off")
        for column, (name, image) in enumerate(shown.items(), start=1):
            axes[0][column].imshow(image.numpy(), cmap="gray", vmin=0, vmax=vmax)
            score = metrics.get(name)
            label = f"\nPSNR {score['psnr']:.2f} dB, SSIM {score['ssim']:.3f}" if score else ""
            axes[0][column].set_title(f"{name}{label}", fontsize=7)
            shown_error = axes[1][column].imshow(errors[name].numpy(), cmap="inferno", vmin=0, vmax=error_max)
            axes[1][column].set_title(f"|error| {name}", fontsize=7)
        figure.colorbar(shown_error, ax=list(axes[1][1:]), shrink=0.8, label="absolute error")
    else:
        for column, (name, image) in enumerate(images.items()):
            magnitude = _magnitude(image)
            axes[0][column].imshow(magnitude.numpy(), cmap="gray", vmin=0,
                                   vmax=float(torch.quantile(magnitude.flatten(), 0.995)) or 1.0)
            axes[0][column].set_title(name, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=9)
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path
