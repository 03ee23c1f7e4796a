"""The demo's figures: the comparison of reference, baselines and networks (with error maps), and
speed-up and PSNR against the pruning ratio.

Every PNG is drawn to a temporary file in the output folder and renamed into place, so an
interrupted run leaves no half-written image.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mbdlfast.figures import comparison_figure
from mbdlfast.outputs import atomic_path


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
    return path


def _curves(out: Path, name: str, rows, series: dict[str, str], ylabel: str, baseline: dict[str, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optimized = sorted((row for row in rows if row.pipeline == "optimized"), key=lambda row: row.ratio)
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    ratios = [row.ratio for row in optimized]
    for attribute, label in series.items():
        axis.plot(ratios, [getattr(row, attribute) for row in optimized], marker="o", label=label)
    for index, (label, value) in enumerate(baseline.items()):
        axis.axhline(value, color=f"C{index + len(series)}", linestyle=("--", ":", "-.")[index % 3], linewidth=1,
                     label=label)
    axis.set_xlabel("pruning ratio (fraction of channels removed)")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    try:
        return _save(figure, out / name)
    finally:
        plt.close(figure)


def write_demo_figures(out: Path, rows, images: dict[str, torch.Tensor], metrics: dict[str, dict[str, float]], *,
                       reference: torch.Tensor, reference_name: str) -> list[Path]:
    """Write the three PNGs for the first test slice (``images``: name -> (H,W), ``metrics``: name ->
    its PSNR / SSIM there) and the table ``rows``; returns their paths."""
    baseline = next(row for row in rows if row.pipeline == "baseline")
    classical = {row.label: row.psnr for row in rows if row.pipeline == "classical"}
    return [
        comparison_figure(out / "recon_grid.png", images, reference=reference, reference_name=reference_name,
                          metrics=metrics, title="first test slice: reference, classical baselines, networks"),
        _curves(out, "speedup_vs_ratio.png", rows, {"speedup_vs_baseline": "vs dense baseline (naive operator)",
                                                    "speedup_vs_dense": "vs dense optimized"},
                "speed-up per slice (same solver tolerance)", {"1x": 1.0}),
        _curves(out, "psnr_vs_ratio.png", rows, {"psnr": "optimized pipeline (dense at ratio 0)"},
                "PSNR (dB)", {"dense baseline": baseline.psnr, **classical}),
    ]
