"""VarNet with given coil maps, and E2E-VarNet with learned maps (Sriram et al., 2020).

Each cascade updates the k-space estimate k with a soft data-consistency term and a learned
regulariser, k ← k − λ·M·(k − y) − F S · NormUnet(Sᴴ Fᴴ k), through the SENSE operator's
``soft_dc``, ``expand`` and ``reduce`` (the dispatched ops :func:`mbdlfast.ops.soft_kspace_dc`,
:func:`~mbdlfast.ops.coil_expand` and :func:`~mbdlfast.ops.coil_reduce`). With
``estimate_sens=True`` a :class:`SensitivityModel` estimates the maps from the fully sampled
k-space centre (E2E-VarNet); otherwise the operator's maps (e.g. ESPIRiT) are used. Module and parameter names follow ``fastmri.models.VarNet``, so its
state_dicts load directly (:meth:`VarNet.from_fastmri`).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from mbdlfast._validation import check_complex, check_shape
from mbdlfast.models.unet import NormUnet
from mbdlfast.ops.fft import ifft2c
from mbdlfast.physics.linalg import rss
from mbdlfast.physics.sense import SenseOperator

OUTPUTS = ("rss", "image", "kspace")


def centre_square(mask: torch.Tensor) -> torch.Tensor:
    """Per sample of a (B,H,W) bool 2D mask, the largest square around the centre (H//2, W//2) that it
    samples completely, as a (B,H,W) bool keep-mask (all on the device, no host sync)."""
    height, width = mask.shape[-2:]
    rows = (torch.arange(height, device=mask.device) - height // 2).abs()
    columns = (torch.arange(width, device=mask.device) - width // 2).abs()
    distance = torch.maximum(rows[:, None], columns[None, :])  # Chebyshev distance from the centre
    unsampled = torch.where(mask, torch.full_like(distance, height + width), distance)
    radius = unsampled.flatten(1).amin(dim=1)  # the nearest unsampled position bounds the square
    return distance[None] < radius[:, None, None]


def _leading_run(sampled: torch.Tensor) -> torch.Tensor:
    """Per row of a (B,n) bool tensor, how many leading entries are True."""
    return sampled.long().cumprod(dim=-1).sum(dim=-1)


def center_band(mask: torch.Tensor, num_low_frequencies=None) -> tuple[torch.Tensor, torch.Tensor]:
    """First column and width (each (B,)) of the fully sampled k-space centre of a (B,W) bool mask.

    Without ``num_low_frequencies`` the width is twice the shorter run of sampled columns on either
    side of the centre column W//2 (at least 1), which keeps the band symmetric; an int or a (B,)
    tensor sets it explicitly. The band starts at (W − width + 1) // 2, as in fastMRI.

    One difference from fastMRI's rule (its argmin finds the first unsampled column): where a side of
    the centre has no unsampled column (a fully sampled mask, or one fully sampled half), fastMRI's
    band is 1 column wide, ours is the whole sampled run. Pass ``num_low_frequencies=1`` to reproduce
    fastMRI there (tests/test_models.py checks both).
    """
    batch_size, width = mask.shape
    if num_low_frequencies is None or (isinstance(num_low_frequencies, int) and num_low_frequencies == 0):
        center = width // 2
        left = _leading_run(mask[:, :center].flip(-1))
        right = _leading_run(mask[:, center:])
        count = torch.clamp(2 * torch.minimum(left, right), min=1)
    else:
        count = torch.as_tensor(num_low_frequencies, device=mask.device).long().expand(batch_size)
    return (width - count + 1) // 2, count


class SensitivityModel(nn.Module):
    """Coil maps from the k-space centre: ifft2c, a NormUnet on each coil image, then divide by the RSS.

    Args:
        chans, num_pools, drop_prob: of the NormUnet.
        mask_center: keep only the fully sampled centre band of k-space before estimating.
    """

    def __init__(self, chans: int, num_pools: int, in_chans: int = 2, out_chans: int = 2, drop_prob: float = 0.0,
                 mask_center: bool = True):
        super().__init__()
        self.mask_center = mask_center
        self.norm_unet = NormUnet(chans, num_pools, in_chans=in_chans, out_chans=out_chans, drop_prob=drop_prob)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies=None) -> torch.Tensor:
        """(B,C,H,W) k-space and bool (B,W) line or (B,H,W) 2D mask to (B,C,H,W) maps with unit RSS.
        With ``mask_center`` a line mask keeps its centre band of columns, a 2D mask its fully
        sampled centre square."""
        if self.mask_center and mask.dim() == 3:
            masked_kspace = masked_kspace * centre_square(mask)[:, None]
        elif self.mask_center:
            start, count = center_band(mask, num_low_frequencies)
            columns = torch.arange(mask.shape[-1], device=mask.device)
            keep = (columns >= start[:, None]) & (columns < (start + count)[:, None])
            masked_kspace = masked_kspace * keep[:, None, None, :]
        batch_size, num_coils, height, width = masked_kspace.shape
        coil_images = ifft2c(masked_kspace).reshape(batch_size * num_coils, height, width)
        maps = self.norm_unet(coil_images).reshape(batch_size, num_coils, height, width)
        return maps / rss(maps, dim=1).unsqueeze(1)


class VarNetBlock(nn.Module):
    """One cascade: k − λ·M·(k − y) − F S · model(Sᴴ Fᴴ k), with a learned λ (``dc_weight``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(self, kspace: torch.Tensor, ref_kspace: torch.Tensor, physics: SenseOperator) -> torch.Tensor:
        model_term = physics.expand(self.model(physics.reduce(kspace)))
        return physics.soft_dc(kspace, ref_kspace, self.dc_weight) - model_term


class VarNet(nn.Module):
    """Unrolled variational network on complex64 multicoil k-space.

    Args:
        num_cascades: number of unrolled cascades, each with its own NormUnet(chans, pools).
        chans, pools: channels and pooling levels of the cascades' NormUnets.
        sens_chans, sens_pools: of the sensitivity NormUnet (only with ``estimate_sens``).
        estimate_sens: learn the coil maps from the data (E2E-VarNet) instead of taking them as input.
        mask_center: the sensitivity model looks at the fully sampled centre band only.
        output: ``"rss"`` (real (B,H,W) root-sum-of-squares image, what fastMRI returns), ``"image"``
            (complex (B,H,W) coil combination with the maps) or ``"kspace"`` (complex (B,C,H,W)).

    Parameter counts: 8 cascades (chans 18, pools 4) with given maps 19,634,712; with the
    sensitivity net (8, 4) 20,119,610; fastMRI's default (12 cascades) 29,936,966.
    """

    def __init__(self, num_cascades: int = 12, chans: int = 18, pools: int = 4, sens_chans: int = 8,
                 sens_pools: int = 4, estimate_sens: bool = True, mask_center: bool = True, output: str = "rss"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
        if num_cascades < 1:
            raise ValueError(f"num_cascades: expected >= 1, got {num_cascades}")
        self.estimate_sens = estimate_sens
        self.output = output
        if estimate_sens:
            self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center=mask_center)
        self.cascades = nn.ModuleList(VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades))

    def forward(self, masked_kspace: torch.Tensor, physics: SenseOperator, num_low_frequencies=None) -> torch.Tensor:
        """Reconstruct from undersampled k-space (B,C,H,W) and its SENSE operator (1D lines or a 2D
        pattern, full k-space); see ``output`` for the result.

        With ``estimate_sens`` the operator's maps are not used (the sensitivity network estimates
        them from the k-space centre, so ``physics`` may describe the sampling only, built with
        ``maps=None``); otherwise they are required. ``num_low_frequencies`` (int or (B,)) overrides
        the centre band the sensitivity net sees.
        """
        if not isinstance(physics, SenseOperator) or physics.compact:
            raise ValueError("physics: expected a SenseOperator on full k-space (compact=False)")
        check_complex("masked_kspace", masked_kspace, physics.dtype)
        check_shape("masked_kspace", masked_kspace, (physics.batch_size, *physics.shape), "multicoil k-space (B,C,H,W)")
        if self.estimate_sens:
            physics = physics.with_maps(self.estimated_maps(masked_kspace, physics, num_low_frequencies))

        kspace = masked_kspace
        for cascade in self.cascades:
            kspace = cascade(kspace, masked_kspace, physics)

        if self.output == "kspace":
            return kspace
        if self.output == "image":
            return physics.reduce(kspace)
        return rss(ifft2c(kspace), dim=1)

    def estimated_maps(self, masked_kspace: torch.Tensor, physics: SenseOperator,
                       num_low_frequencies=None) -> torch.Tensor:
        """The (B,C,H,W) coil maps the sensitivity network estimates from the k-space centre (E2E-VarNet
        only): those of its reconstruction, so a loss on A·x̂ without ground truth needs them too."""
        if not self.estimate_sens:
            raise ValueError("estimate_sens: this VarNet takes its coil maps as input and estimates none")
        batch_size, _, height, width = masked_kspace.shape
        mask = (physics.mask != 0).expand((batch_size, height, width) if physics.is_2d else (batch_size, width))
        return self.sens_net(masked_kspace, mask, num_low_frequencies)

    @classmethod
    def from_fastmri(cls, state_dict: dict, **kwargs) -> "VarNet":
        """A VarNet loaded from a ``fastmri.models.VarNet`` state_dict, with the same outputs.

        The architecture (cascades, chans, pools, sensitivity net) is read from the state_dict;
        ``kwargs`` (e.g. ``output``, ``mask_center``) go to the constructor. Outputs equal fastMRI's
        for masks with unsampled columns on both sides of the centre; see :func:`center_band` for
        fully sampled or one-sided masks.
        """
        def unet_shape(prefix: str) -> tuple[int, int]:
            levels = {int(m.group(1)) for key in state_dict
                      if (m := re.match(re.escape(prefix) + r"unet\.down_sample_layers\.(\d+)\.", key))}
            first = state_dict[prefix + "unet.down_sample_layers.0.layers.0.weight"]
            return first.shape[0], len(levels)

        cascades = {int(m.group(1)) for key in state_dict if (m := re.match(r"cascades\.(\d+)\.dc_weight$", key))}
        if not cascades:
            raise ValueError("state_dict: no 'cascades.<i>.dc_weight' entries; "
                             "is it a fastmri.models.VarNet state_dict?")
        chans, pools = unet_shape("cascades.0.model.")
        config = dict(num_cascades=len(cascades), chans=chans, pools=pools)
        if "sens_net.norm_unet.unet.down_sample_layers.0.layers.0.weight" in state_dict:
            sens_chans, sens_pools = unet_shape("sens_net.norm_unet.")
            config.update(sens_chans=sens_chans, sens_pools=sens_pools, estimate_sens=True)
        else:
            config.update(estimate_sens=False)
        config.update(kwargs)
        model = cls(**config)
        model.load_state_dict(state_dict)
        return model
