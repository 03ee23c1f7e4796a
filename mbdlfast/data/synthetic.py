"""Synthetic multicoil MRI: phantoms, simulated coils and noise, and fastMRI-layout h5 files.

The project's embedded default data (no download needed) for the demo and the tests. Every sample
is a deterministic function of ``(seed, index)``, so sample ``i`` is the same whether it is drawn
alone, in a batch or from a dataset, and two seeds give independent data.

Model: ``kspace = fft2c(S · x) + n`` with ``x`` a complex phantom (smooth random phase), ``S``
simulated coil maps normalised to RSS = 1 (:mod:`mbdlfast.physics.coils`), and ``n`` circular
complex Gaussian noise. SNR definition: ``snr_db = 10·log10(P_signal / σ²)``, where ``P_signal``
is the mean of ``|fft2c(S·x)|²`` over all coils and k-space samples of that slice and
``σ² = E|n|²`` per complex sample (σ²/2 per real and imaginary part).

Phantom families (``PHANTOM_FAMILIES``), for experiments under a shift of family:
``"brain"`` (scalp, skull, CSF, grey/white matter, fissure, ventricles, random lesions, smooth bias),
``"shepp_logan"`` (modified Shepp–Logan with jittered ellipses) and ``"ellipses"`` (random ellipses
in a disc). Coordinates are isotropic: the object fits the shorter image side. A family
``"images:<path>[,<path>...]"`` takes random views of real magnitude images instead
(:mod:`mbdlfast.data.image_magnitudes`), and ``"brain|images:<path>"`` mixes sources, each sample
drawing one at random.
"""
from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from mbdlfast._validation import check_int
from mbdlfast.outputs import atomic_path
from mbdlfast.data.image_magnitudes import image_paths, image_view, is_image_family
from mbdlfast.physics.coils import pixel_grid, simulate_coil_maps
from mbdlfast.ops.fft import fft2c, ifft2c

logger = logging.getLogger(__name__)

PHANTOM_FAMILIES = ("brain", "shepp_logan", "ellipses")
ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
DEFAULT_RECON_SIZE = (320, 320)


@dataclass(frozen=True)
class Ellipse:
    """An ellipse with centre (cx, cy), semi-axes (ax, ay) and rotation ``angle`` in radians."""

    value: float
    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0

    def inside(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        u = (x - self.cx) * cos + (y - self.cy) * sin
        v = -(x - self.cx) * sin + (y - self.cy) * cos
        return (u / self.ax) ** 2 + (v / self.ay) ** 2 <= 1.0


def render_ellipses(ellipses, height: int, width: int, *, additive: bool) -> np.ndarray:
    """(H,W) float64 image: ellipse values summed (``additive``, Shepp–Logan style) or painted in
    order, each overwriting what lies beneath (``additive=False``)."""
    y, x = pixel_grid(height, width)
    image = np.zeros((height, width))
    for ellipse in ellipses:
        inside = ellipse.inside(y, x)
        if additive:
            image[inside] += ellipse.value
        else:
            image[inside] = ellipse.value
    return image


def smooth_random_field(rng: np.random.Generator, height: int, width: int, *, max_frequency: int = 2) -> np.ndarray:
    """(H,W) smooth field in [-1, 1]: random low-frequency cosines (up to ``max_frequency`` cycles
    per image side in each direction), normalised to a peak magnitude of 1."""
    y, x = pixel_grid(height, width)
    field = np.zeros((height, width))
    for ky in range(max_frequency + 1):
        for kx in range(max_frequency + 1):
            weight = rng.normal() / (1.0 + ky**2 + kx**2)
            field += weight * np.cos(math.pi / 2 * (ky * y + kx * x) + rng.uniform(0.0, 2.0 * math.pi))
    return field / np.abs(field).max()


def _brain_magnitude(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    scale = rng.uniform(0.88, 0.98)
    ax, ay = 0.72 * scale * rng.uniform(0.95, 1.05), 0.92 * scale
    cx, cy = rng.uniform(-0.03, 0.03, size=2)
    tilt = math.radians(rng.uniform(-8.0, 8.0))
    cos, sin = math.cos(tilt), math.sin(tilt)

    def part(value, px, py, sx, sy, angle=0.0):
        """An ellipse placed relative to the head (offsets and axes as fractions of its axes)."""
        ox, oy = px * ax, py * ay
        return Ellipse(value, cx + ox * cos - oy * sin, cy + ox * sin + oy * cos, sx * ax, sy * ay, tilt + angle)

    ventricle_x, ventricle_tilt = rng.uniform(0.08, 0.13), math.radians(rng.uniform(12.0, 25.0))
    ventricle_size = rng.uniform(0.8, 1.2)
    ellipses = [
        part(0.7, 0, 0, 1.0, 1.0),  # scalp and fat
        part(0.05, 0, 0, 0.93, 0.94),  # skull bone
        part(0.9, 0, 0, 0.89, 0.90),  # CSF around the brain
        part(0.6, 0, -0.01, 0.85, 0.86),  # grey matter
        part(0.45, -0.3, 0, 0.25, 0.62),  # white matter, left hemisphere
        part(0.45, 0.3, 0, 0.25, 0.62),  # white matter, right hemisphere
        part(0.9, 0, 0, 0.02, 0.78),  # interhemispheric fissure
        part(0.95, -ventricle_x, -0.08, 0.07 * ventricle_size, 0.26 * ventricle_size, ventricle_tilt),
        part(0.95, ventricle_x, -0.08, 0.07 * ventricle_size, 0.26 * ventricle_size, -ventricle_tilt),
    ]
    for _ in range(rng.integers(0, 5)):  # lesions inside the brain
        radius, direction = 0.6 * math.sqrt(rng.uniform()), rng.uniform(0.0, 2.0 * math.pi)
        sizes = rng.uniform(0.02, 0.08, size=2)
        ellipses.append(
            part(rng.uniform(0.2, 1.0), radius * math.cos(direction), radius * math.sin(direction),
                 sizes[0], sizes[1], rng.uniform(0.0, math.pi))
        )
    bias = 1.0 + 0.15 * smooth_random_field(rng, height, width, max_frequency=1)
    return render_ellipses(ellipses, height, width, additive=False) * bias


# Modified Shepp–Logan (Toft): value, semi-axes (ax, ay), centre (cx, cy), rotation in degrees.
_SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def _shepp_logan_magnitude(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The whole phantom randomly scaled, shifted and turned; the inner features also jittered
    one by one (the outer two rings only move together, so the skull stays intact)."""
    scale, shift, turn = rng.uniform(0.9, 1.0), rng.normal(0.0, 0.02, size=2), math.radians(rng.normal(0.0, 3.0))
    cos, sin = math.cos(turn), math.sin(turn)
    ellipses = []
    for number, (value, ax, ay, cx, cy, degrees) in enumerate(_SHEPP_LOGAN):
        if number >= 2:
            ax, ay = ax * rng.uniform(0.9, 1.1), ay * rng.uniform(0.9, 1.1)
            cx, cy = cx + rng.normal(0.0, 0.01), cy + rng.normal(0.0, 0.01)
            value *= rng.uniform(0.8, 1.2)
        centre_x = scale * (cx * cos - cy * sin) + shift[0]
        centre_y = scale * (cx * sin + cy * cos) + shift[1]
        ellipses.append(Ellipse(value, centre_x, centre_y, scale * ax, scale * ay, math.radians(degrees) + turn))
    return np.clip(render_ellipses(ellipses, height, width, additive=True), 0.0, None)


def _ellipses_magnitude(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ellipses = [Ellipse(rng.uniform(0.3, 0.6), 0.0, 0.0, rng.uniform(0.75, 0.9), rng.uniform(0.75, 0.9))]
    for _ in range(rng.integers(6, 13)):
        radius, direction = 0.55 * math.sqrt(rng.uniform()), rng.uniform(0.0, 2.0 * math.pi)
        ellipses.append(Ellipse(rng.uniform(0.0, 1.0), radius * math.cos(direction), radius * math.sin(direction),
                                rng.uniform(0.03, 0.25), rng.uniform(0.03, 0.25), rng.uniform(0.0, math.pi)))
    return render_ellipses(ellipses, height, width, additive=False)


_MAGNITUDES = {"brain": _brain_magnitude, "shepp_logan": _shepp_logan_magnitude, "ellipses": _ellipses_magnitude}


FAMILY_MIX_SEPARATOR = "|"


def check_family(family: str) -> str:
    """``family`` if it names a phantom family, existing images (``images:<path>[,...]``) or a mixture
    of these joined by "|" (each sample draws one of them at random); else a clear error."""
    if not isinstance(family, str):
        raise TypeError(f"family: expected a string, got {type(family).__name__}")
    for part in family.split(FAMILY_MIX_SEPARATOR):
        if is_image_family(part):
            image_paths(part)
        elif part not in _MAGNITUDES:
            raise ValueError(f"family: expected one of {PHANTOM_FAMILIES}, 'images:<path>[,<path>...]' or a "
                             f"'|'-joined mixture of these, got {family!r}")
    return family


def phantom(family: str, height: int, width: int, *, rng: np.random.Generator | int,
            max_phase: float = 1.5) -> np.ndarray:
    """(H,W) complex128 phantom of ``family``: its magnitude times a smooth random phase whose peak
    magnitude is ``max_phase`` radians. ``rng`` is a numpy Generator or an integer seed."""
    rng = np.random.default_rng(rng)
    parts = check_family(family).split(FAMILY_MIX_SEPARATOR)
    part = parts[rng.integers(len(parts))] if len(parts) > 1 else parts[0]
    magnitude = image_view(part, rng, height, width) if is_image_family(part) else _MAGNITUDES[part](rng, height, width)
    return magnitude * np.exp(1j * max_phase * smooth_random_field(rng, height, width))


class SyntheticMulticoil:
    """Generator of fully sampled multicoil slices, deterministic in ``(seed, index)``.

    Each sample has its own phantom, coil maps (ring rotation and coil phases vary) and noise.
    ``snr_db=None`` gives noise-free k-space.
    """

    def __init__(self, height: int, width: int, num_coils: int, *, snr_db: float | None = 30.0,
                 seed: int = 0, family: str = "brain"):
        if snr_db is not None and not math.isfinite(snr_db):
            raise ValueError(f"snr_db: expected a finite number of dB or None (noise-free), got {snr_db!r}")
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.num_coils = check_int("num_coils", num_coils, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.snr_db, self.family = snr_db, check_family(family)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """Samples ``indices`` stacked: kspace and maps (B,C,H,W), target (B,H,W) complex64,
        noise_std (B,) float64 (σ of the complex noise, 0 when noise-free), index (B,) int64."""
        indices = [int(i) for i in indices]
        if not indices or min(indices) < 0:
            raise ValueError(f"indices: expected a non-empty list of non-negative integers, got {indices}")
        images, maps, noise_rngs = [], [], []
        for index in indices:
            phantom_seq, coil_seq, noise_seq = np.random.SeedSequence([self.seed, index]).spawn(3)
            images.append(phantom(self.family, self.height, self.width, rng=np.random.default_rng(phantom_seq)))
            maps.append(simulate_coil_maps(self.num_coils, self.height, self.width,
                                           seed=int(coil_seq.generate_state(1)[0])))
            noise_rngs.append(np.random.default_rng(noise_seq))
        target = torch.from_numpy(np.stack(images))
        maps = torch.stack(maps)
        kspace = fft2c(maps.to(torch.complex128) * target.unsqueeze(1))
        noise_std = torch.zeros(len(indices), dtype=torch.float64)
        if self.snr_db is not None:
            signal_power = kspace.abs().square().mean(dim=(-3, -2, -1))
            noise_std = torch.sqrt(signal_power / 10.0 ** (self.snr_db / 10.0))
            shape = (2, *kspace.shape[1:])
            for b, rng in enumerate(noise_rngs):
                real, imag = torch.from_numpy(rng.standard_normal(shape)) * (noise_std[b] / math.sqrt(2.0))
                kspace[b] += torch.complex(real, imag)
        return {
            "kspace": kspace.to(torch.complex64),
            "maps": maps,
            "target": target.to(torch.complex64),
            "noise_std": noise_std,
            "index": torch.tensor(indices, dtype=torch.int64),
        }

    def sample(self, index: int) -> dict[str, torch.Tensor]:
        """One sample: the entries of :meth:`batch` without the batch dimension."""
        return {key: value[0] for key, value in self.batch([index]).items()}


class SyntheticMulticoilDataset(torch.utils.data.Dataset):
    """``num_slices`` synthetic slices as a torch Dataset; item ``i`` is ``SyntheticMulticoil.sample(i)``:
    a dict with kspace (C,H,W) fully sampled, maps (C,H,W), target (H,W) complex64, noise_std, index."""

    def __init__(self, num_slices: int, height: int, width: int, num_coils: int, *,
                 snr_db: float | None = 30.0, seed: int = 0, family: str = "brain"):
        self.num_slices = check_int("num_slices", num_slices, minimum=1)
        self.generator = SyntheticMulticoil(height, width, num_coils, snr_db=snr_db, seed=seed, family=family)

    def __len__(self) -> int:
        return self.num_slices

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.num_slices <= index < self.num_slices:
            raise IndexError(f"index {index} out of range for {self.num_slices} slices")
        return self.generator.sample(index % self.num_slices)


def _ismrmrd_header(encoded: tuple[int, int, int], recon: tuple[int, int, int], center: int, maximum: int,
                    num_slices: int) -> bytes:
    """Minimal ISMRMRD XML with the fields fastMRI's SliceDataset reads."""
    ET.register_namespace("", ISMRMRD_NAMESPACE)

    def child(parent, tag, text=None):
        element = ET.SubElement(parent, f"{{{ISMRMRD_NAMESPACE}}}{tag}")
        if text is not None:
            element.text = str(text)
        return element

    root = ET.Element(f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader")
    encoding = child(root, "encoding")
    for space, size in (("encodedSpace", encoded), ("reconSpace", recon)):
        matrix = child(child(encoding, space), "matrixSize")
        for axis, n in zip("xyz", size):
            child(matrix, axis, n)
    limits = child(encoding, "encodingLimits")
    for name, (lo, hi, mid) in (("kspace_encoding_step_1", (0, maximum, center)),
                                ("kspace_encoding_step_2", (0, 0, 0)),
                                ("slice", (0, num_slices - 1, 0))):
        entry = child(limits, name)
        for tag, value in (("minimum", lo), ("maximum", hi), ("center", mid)):
            child(entry, tag, value)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def rss_recon(kspace, recon_size: tuple[int, int]) -> np.ndarray:
    """(S,h,w) float32 root-sum-of-squares image of (S,C,H,W) k-space, centre-cropped to ``recon_size``
    the way fastMRI crops (start at (N - n) // 2)."""
    kspace = torch.as_tensor(np.asarray(kspace))
    image = ifft2c(kspace).abs().square().sum(dim=-3).sqrt()
    (h, w), (H, W) = recon_size, image.shape[-2:]
    top, left = (H - h) // 2, (W - w) // 2
    return image[..., top:top + h, left:left + w].numpy().astype(np.float32)


def write_fastmri_h5(path, kspace, *, reconstruction_rss=None, recon_size: tuple[int, int] | None = None,
                     encoding_limits: tuple[int, int] | None = None, acquisition: str = "AXT2",
                     patient_id: str | None = None) -> Path:
    """Write one volume in fastMRI's multicoil h5 layout; returns the path.

    ``kspace`` (S,C,H,W) complex (numpy or torch), H the readout and W the phase-encode dimension,
    is stored as complex64 'kspace'. 'reconstruction_rss' (S,h,w) float32 is given or computed as the
    RSS of the coil images cropped to ``recon_size`` (default 320x320, each side at most the image's).
    attrs: 'max' and 'norm' (max and l2 norm of the reconstruction), 'acquisition', 'patient_id'.
    'ismrmrd_header' holds encodedSpace (H,W,1), reconSpace (h,w,1) and kspace_encoding_step_1
    ``encoding_limits`` = (center, maximum), default (W // 2, W - 1): all lines acquired.
    The file is written under a temporary name and renamed into place.
    """
    path = Path(path)
    if hasattr(kspace, "detach"):
        kspace = kspace.detach().cpu().numpy()
    kspace = np.asarray(kspace)
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise ValueError(f"kspace: expected a complex (S,C,H,W) array, got {kspace.dtype} of shape {kspace.shape}")
    num_slices, _, height, width = kspace.shape
    if recon_size is None:
        recon_size = (min(DEFAULT_RECON_SIZE[0], height), min(DEFAULT_RECON_SIZE[1], width))
    if not (len(recon_size) == 2 and 1 <= recon_size[0] <= height and 1 <= recon_size[1] <= width):
        raise ValueError(f"recon_size: expected (h, w) within the image size {(height, width)}, got {recon_size}")
    recon_size = (int(recon_size[0]), int(recon_size[1]))
    if reconstruction_rss is None:
        reconstruction_rss = rss_recon(kspace, recon_size)
    if hasattr(reconstruction_rss, "detach"):
        reconstruction_rss = reconstruction_rss.detach().cpu().numpy()
    reconstruction_rss = np.asarray(reconstruction_rss, dtype=np.float32)
    if reconstruction_rss.shape != (num_slices, *recon_size):
        raise ValueError(f"reconstruction_rss: expected shape {(num_slices, *recon_size)}, "
                         f"got {reconstruction_rss.shape}")
    center, maximum = encoding_limits if encoding_limits is not None else (width // 2, width - 1)
    header = _ismrmrd_header((height, width, 1), (*recon_size, 1), center, maximum, num_slices)

    with atomic_path(path) as temporary, h5py.File(temporary, "w") as hf:
        hf.create_dataset("kspace", data=kspace.astype(np.complex64))
        hf.create_dataset("reconstruction_rss", data=reconstruction_rss)
        hf.create_dataset("ismrmrd_header", data=header)
        hf.attrs["max"] = float(reconstruction_rss.max())
        hf.attrs["norm"] = float(np.linalg.norm(reconstruction_rss))
        hf.attrs["acquisition"] = acquisition
        hf.attrs["patient_id"] = patient_id if patient_id is not None else path.stem
    return path


def write_synthetic_fastmri_folder(root, num_volumes: int, slices_per_volume: int, height: int, width: int,
                                   num_coils: int, *, snr_db: float | None = 30.0, seed: int = 0,
                                   family: str = "brain") -> list[Path]:
    """Write ``num_volumes`` synthetic volumes ``synthetic_{family}_{v:03d}.h5`` under ``root``
    (created if needed); volume v holds samples v·slices_per_volume ... of one generator."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    generator = SyntheticMulticoil(height, width, num_coils, snr_db=snr_db, seed=seed, family=family)
    paths = []
    for volume in range(num_volumes):
        first = volume * slices_per_volume
        kspace = generator.batch(range(first, first + slices_per_volume))["kspace"]
        path = root / f"synthetic_{family}_{volume:03d}.h5"
        paths.append(write_fastmri_h5(path, kspace, patient_id=f"synthetic-{family}-{seed}-{volume:03d}"))
    logger.info("wrote %d synthetic %s volumes to %s", num_volumes, family, root)
    return paths
