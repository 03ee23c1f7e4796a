"""Figures of the GAN-prior runs, written atomically: a grid of generated samples, and the truth beside
each reconstruction with its per-pixel error."""
from __future__ import annotations

from pathlib import Path

import torch

from mbdlfast.outputs import atomic_path


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
    return path


def _rgb(image: torch.Tensor):
    return image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def save_samples(path, generator, *, seed: int = 0, count: int = 16) -> Path:
    """A 4-column grid of ``count`` images from seeded latent codes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generator.eval()
    device = next(generator.parameters()).device
    z = torch.randn(count, generator.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    images = generator(z)
    rows = -(-count // 4)
    figure, axes = plt.subplots(rows, 4, figsize=(6, 1.5 * rows), squeeze=False)
    for axis, image in zip(axes.flat, images):
        axis.imshow(_rgb(image), interpolation="nearest")
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("generator samples", fontsize=9)
    return _save(figure, Path(path))


def save_inversions(path, truth: torch.Tensor, estimate: torch.Tensor, names: list[str], errors: torch.Tensor,
                    title: str) -> Path:
    """Per image: the truth (top) and the reconstruction with its per-pixel error (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names) + 0.4, 4.6), squeeze=False)
    for column, name in enumerate(names):
        axes[0][column].imshow(_rgb(truth[column]), interpolation="nearest")
        axes[0][column].set_title(name, fontsize=8)
        axes[1][column].imshow(_rgb(estimate[column]), interpolation="nearest")
        axes[1][column].set_title(f"error {float(errors[column]):.4f}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(title, fontsize=8)
    return _save(figure, Path(path))
