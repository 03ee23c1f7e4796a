"""Files of an IMP run (the JSON record, the PSNR-against-sparsity curve, the images per round, a
ticket's sparsity per layer) and of a ticket transfer, each written atomically."""
from __future__ import annotations

from pathlib import Path

import torch

from mbdlfast.dip.problems import Problem
from mbdlfast.dip.tasks import CompressedSensingMRI, SuperResolution
from mbdlfast.outputs import atomic_path, write_json

__all__ = ["save_layer_sparsity", "save_lip_report", "save_transfer_report"]


def _displayable(image: torch.Tensor) -> torch.Tensor:
    """(H, W) or (H, W, 3) numpy array for imshow from one image in a task's image layout."""
    if image.is_complex():
        return image.abs().clamp(0, 1).cpu().numpy()
    image = image.clamp(0, 1).cpu()
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def save_lip_report(out: Path, settings: dict, result, problem: Problem) -> list[Path]:
    """Write ``lip.json``, ``lip_psnr.png`` and ``lip_images.png`` (first image of the batch) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    json_path, curve_path, images_path = out / "lip.json", out / "lip_psnr.png", out / "lip_images.png"
    chosen = result.records[result.chosen_round]
    payload = {"settings": settings, "stopped_early": result.stopped_early, "chosen_round": result.chosen_round,
               "chosen_sparsity": chosen["sparsity"], "chosen_psnr": chosen["psnr"], "rounds": result.records,
               "sparsity": [r["sparsity"] for r in result.records[1:]], "psnr": [r["psnr"] for r in result.records[1:]]}
    write_json(json_path, payload)

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot([100 * r["sparsity"] for r in result.records], [r["psnr"] for r in result.records], "o-", label="IMP")
    axis.axhline(result.records[0]["psnr"], color="gray", linestyle="--", label="dense")
    axis.set_xlabel("sparsity of the conv weights (%)")
    axis.set_ylabel("PSNR (dB)")
    axis.set_title(f"LIP, {settings['task']} on {problem.image_name}")
    axis.legend()
    figure.tight_layout()
    with atomic_path(curve_path) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)

    panels = [("truth", problem.truth[0])]
    if not isinstance(problem.task, (CompressedSensingMRI, SuperResolution)):
        panels.append(("measurement", problem.measurement[0]))
    panels += [(f"round {r['round']}: {100 * r['sparsity']:.0f}%, {r['psnr']:.2f} dB", image[0])
               for r, image in zip(result.records, result.reconstructions)]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for axis, (title, image) in zip(list(axes), panels):
        axis.imshow(_displayable(image), cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    figure.tight_layout()
    with atomic_path(images_path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return [json_path, curve_path, images_path]


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
    return path


def save_layer_sparsity(path: Path, masks: dict[str, torch.Tensor], title: str) -> Path:
    """A bar chart of the fraction of pruned weights of each masked layer, in network order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(masks)
    pruned = [100 * float(1 - masks[name].float().mean()) for name in names]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.22 * len(names) + 1.5), 3.6))
    axis.bar(range(len(names)), pruned, color="tab:blue")
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
    axis.set_ylabel("pruned weights (%)")
    axis.set_ylim(0, 100)
    total = 100 * float(1 - sum(m.sum() for m in masks.values()) / sum(m.numel() for m in masks.values()))
    axis.set_title(f"{title}: {total:.1f} % of the conv weights pruned", fontsize=9)
    figure.tight_layout()
    return _save(figure, Path(path))


def save_transfer_report(out: Path, record: dict, fits: dict, problem: Problem) -> list[Path]:
    """``transfer.json`` and ``transfer.png`` (truth, measurement and each fit's reconstruction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    json_path = write_json(out / "transfer.json", record)
    panels = [("truth", problem.truth[0])]
    if not isinstance(problem.task, (CompressedSensingMRI, SuperResolution)):
        panels.append(("measurement", problem.measurement[0]))
    panels += [(f"{label}: {fit.psnr:.2f} dB", fit.image[0]) for label, fit in fits.items()]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for axis, (title, image) in zip(list(axes), panels):
        axis.imshow(_displayable(image), cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    ticket = record["ticket"]
    figure.suptitle(f"ticket of round {ticket['round']} ({100 * ticket['sparsity']:.0f} % sparse, found on "
                    f"{'+'.join(ticket['found_on'].get('images', []))}, {ticket['found_on'].get('task')}) on "
                    f"{problem.image_name}, {record['settings']['task']}", fontsize=8)
    figure.tight_layout()
    return [json_path, _save(figure, out / "transfer.png")]
