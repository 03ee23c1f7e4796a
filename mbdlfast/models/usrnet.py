"""USRNet (Zhang, Van Gool and Timofte, 2020): deep unfolding for super-resolution, the network the
seed prunes in its section 4.2.

Half-quadratic splitting of ‖(k ⊛ x)↓s − y‖² + λΦ(x) unfolded for ``iterations`` steps, each a data
step in closed form and a learned prior step:

    z_i = argmin_x ‖(k ⊛ x)↓s − y‖² + α_i‖x − x_{i−1}‖²   (BlurDownsample's data term: op sr_data_solve)
    x_i = ResUNet([z_i, β_i])                              (the prior, told its level β_i as a constant map)

The weights α_i, β_i come from a small hyper-network of the noise level σ and the scale s, so one
network serves every kernel, scale and noise level. It starts from nearest-neighbour upsampling of y.
:meth:`USRNet.from_official` loads a state dict in the official repository's layout (``p.m_head``,
``h.mlp``, …), reading its sizes from the tensors' shapes.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from mbdlfast.models.resunet import ResUNet
from mbdlfast.physics.blur import BlurDownsample


class HyperParameterNet(nn.Module):
    """(σ, s) -> the 2·iterations positive weights (α_1..α_n, β_1..β_n): three 1×1 convolutions with
    ReLUs and a softplus (plus 1e-6, so that no α is ever zero)."""

    def __init__(self, iterations: int = 8, features: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(2, features, 1), nn.ReLU(inplace=True), nn.Conv2d(features, features, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(features, 2 * iterations, 1), nn.Softplus())

    def forward(self, noise_level: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """(B,) noise levels and scales -> (B, 2·iterations)."""
        inputs = torch.stack([noise_level, scale], dim=1)[..., None, None]
        return self.mlp(inputs)[..., 0, 0] + 1e-6


class USRNet(nn.Module):
    """``model(y, physics)``: (B,C,h,w) low-resolution images and their BlurDownsample -> (B,C,h·s,w·s).

    Args:
        iterations: unfolded steps (8 in USRNet).
        channels: image channels (3: colour; 1: grey).
        features: the prior's four level widths ((64, 128, 256, 512) in USRNet).
        blocks: residual blocks per level of the prior (2).
        hyper_features: width of the hyper-network (64).
    """

    def __init__(self, iterations: int = 8, channels: int = 3, features: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: int = 2, hyper_features: int = 64):
        super().__init__()
        if iterations < 1 or channels < 1 or hyper_features < 1:
            raise ValueError(f"USRNet: expected iterations, channels and hyper_features >= 1, "
                             f"got {iterations}, {channels}, {hyper_features}")
        self.iterations = iterations
        self.prior = ResUNet(channels + 1, channels, features, blocks)
        self.hyper = HyperParameterNet(iterations, hyper_features)

    def forward(self, y: torch.Tensor, physics: BlurDownsample) -> torch.Tensor:
        if not isinstance(physics, BlurDownsample):
            raise TypeError(f"physics: expected a BlurDownsample, got {type(physics).__name__}")
        channels = self.prior.tail.out_channels
        if y.dim() != 4 or y.shape[1] != channels:
            raise ValueError(f"y: expected (B,{channels},h,w) images, got shape {tuple(y.shape)}")
        batch = y.shape[0]
        weights = self.hyper(physics.noise_levels(batch).to(y), y.new_full((batch,), float(physics.scale)))
        alphas, betas = weights[:, :self.iterations], weights[:, self.iterations:]
        data = physics.data_term(y)
        x = nn.functional.interpolate(y, scale_factor=physics.scale, mode="nearest")
        for step in range(self.iterations):
            x = data.solve(x, alphas[:, step])
            level = betas[:, step, None, None, None].expand(batch, 1, *x.shape[-2:])
            x = self.prior(torch.cat([x, level], dim=1))
        return x

    @classmethod
    def from_official(cls, state_dict: Mapping[str, torch.Tensor]) -> "USRNet":
        """A USRNet holding the official checkpoint ``state_dict`` (``usrnet.pth``, ``usrnet_tiny.pth``
        layout: ``p.m_*`` prior, ``h.mlp.*`` hyper-network), its sizes read from the tensors."""
        sizes = ("p.m_head.weight", "p.m_tail.weight", "p.m_up2.0.weight", "p.m_up3.0.weight", "h.mlp.0.weight",
                 "h.mlp.4.weight")
        if not isinstance(state_dict, Mapping) or (missing := [key for key in sizes if key not in state_dict]):
            lacking = f"; it lacks {missing}" if isinstance(state_dict, Mapping) else ""
            raise ValueError("state_dict: expected the official USRNet layout (p.m_* prior, h.mlp.* hyper-network)"
                             + lacking)
        head, tail = state_dict["p.m_head.weight"], state_dict["p.m_tail.weight"]
        up2, up3 = state_dict["p.m_up2.0.weight"], state_dict["p.m_up3.0.weight"]  # (in, out, 2, 2) transposed convs
        features = (head.shape[0], up2.shape[1], up3.shape[1], up3.shape[0])
        blocks = len({key.split(".")[2] for key in state_dict if key.startswith("p.m_body.")})
        model = cls(iterations=state_dict["h.mlp.4.weight"].shape[0] // 2, channels=tail.shape[0],
                    features=features, blocks=blocks,
                    hyper_features=state_dict["h.mlp.0.weight"].shape[0])
        official_name = {_official_to_ours(key): key for key in state_dict}
        missing, unexpected = model.load_state_dict({ours: state_dict[key] for ours, key in official_name.items()},
                                                    strict=False)
        if missing or unexpected:
            raise ValueError(f"state_dict: does not match the official layout it claims: missing "
                             f"{sorted(_ours_to_official(k) for k in missing)}, unexpected "
                             f"{sorted(official_name[k] for k in unexpected)}")
        return model


def _official_to_ours(key: str) -> str:
    key = re.sub(r"^p\.m_", "prior.", key)
    key = re.sub(r"^h\.mlp\.", "hyper.mlp.", key)
    return key.replace(".res.", ".body.")


def _ours_to_official(key: str) -> str:
    key = re.sub(r"^prior\.", "p.m_", key)
    key = re.sub(r"^hyper\.mlp\.", "h.mlp.", key)
    return key.replace(".body.", ".res.")
