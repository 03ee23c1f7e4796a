"""Whole k-space volumes from any supported file, for reconstruction: fastMRI h5, BART cfl, numpy npy.

A :class:`KspaceVolume` holds all slices of one file as (S,C,H,W) complex64 (W the phase-encode
dimension) with what is known about its sampling:

- ``mask``: how the volume was sampled, from the file's ``mask`` dataset (fastMRI test files) or else
  from the k-space positions that hold a nonzero sample in any slice or coil: a (W,) bool line mask
  when every sampled phase-encode column is sampled along the whole readout, else the (H,W) bool
  pattern itself (e.g. Poisson disc);
- ``fully_sampled``: the sampled positions form one contiguous block of rows and columns
  (zero-padded edges, as in many fastMRI volumes, are not undersampling); ``mask`` is then None.

Layouts: fastMRI h5 ``kspace`` (S,C,H,W), or (S,H,W) single-coil; BART arrays with dims
[H W C] or BART's own [H W 1 C] (readout, phase, coils; every other dimension 1); npy (C,H,W) or
(S,C,H,W). A folder holds volumes of any of these formats, read in name order.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from mbdlfast.data.cfl import read_cfl
from mbdlfast.data.fastmri import FastMRISliceDataset, parse_ismrmrd_header

logger = logging.getLogger(__name__)

SUFFIXES = (".h5", ".cfl", ".npy")


@dataclass
class KspaceVolume:
    """One volume: ``name`` (the file's stem), ``kspace`` (S,C,H,W) complex64, the file's ``attrs``
    (fastMRI attrs and header fields when present), ``fully_sampled`` and ``mask``: (W,) or (H,W)
    bool, or None when fully sampled."""

    name: str
    kspace: torch.Tensor
    attrs: dict = field(default_factory=dict)
    fully_sampled: bool = True
    mask: torch.Tensor | None = None

    @property
    def num_slices(self) -> int:
        return self.kspace.shape[0]

    @property
    def sampling(self) -> str:
        """'fully sampled', '1D lines' or '2D pattern'."""
        if self.mask is None:
            return "fully sampled"
        return "1D lines" if self.mask.dim() == 1 else "2D pattern"


def volume_files(path) -> list[Path]:
    """The volume files at ``path``: the file itself, or every supported file of a folder (sorted).

    Raises ValueError naming ``path`` when it does not exist, is of an unknown kind, or is a folder
    without volumes or with two volumes of the same name.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"data: no volumes ({', '.join(SUFFIXES)} files) in the folder {path}")
        stems = [p.stem for p in files]
        duplicates = sorted({s for s in stems if stems.count(s) > 1})
        if duplicates:
            raise ValueError(f"data: {path} holds several files named {duplicates} (one volume per name)")
        return files
    if path.suffix == ".hdr" or (not path.exists() and path.with_name(path.name + ".cfl").is_file()):
        path = path.with_suffix(".cfl") if path.suffix == ".hdr" else path.with_name(path.name + ".cfl")
    if not path.exists():
        raise ValueError(f"data: {path} does not exist")
    if path.suffix not in SUFFIXES:
        raise ValueError(f"data: {path} is not a volume; expected a fastMRI .h5, BART .cfl, .npy file or a folder")
    return [path]


def load_volume(path) -> KspaceVolume:
    """The volume in one file (see :func:`volume_files` for the kinds); ValueError naming the file."""
    path = Path(path)
    readers = {".h5": _read_h5, ".cfl": _read_cfl, ".npy": _read_npy}
    if path.suffix not in readers:
        raise ValueError(f"data: {path} is not a volume; expected a fastMRI .h5, BART .cfl or .npy file")
    kspace, attrs, stored_mask = readers[path.suffix](path)
    if kspace.shape[-1] < 1 or kspace.shape[-2] < 1 or kspace.shape[0] < 1 or kspace.shape[1] < 1:
        raise ValueError(f"data: {path} holds an empty k-space of shape {tuple(kspace.shape)}")
    if not torch.isfinite(kspace).all():
        raise ValueError(f"data: {path} holds NaN or infinite k-space samples")
    height, width = kspace.shape[-2:]
    if stored_mask is not None:
        if stored_mask.numel() not in (width, height * width):
            raise ValueError(f"data: {path}: its mask has shape {tuple(stored_mask.shape)}, expected ({width},) "
                             f"(one entry per phase-encode column) or ({height}, {width})")
        sampled = stored_mask.reshape(-1) if stored_mask.numel() == width else stored_mask.reshape(height, width)
    else:
        sampled = (kspace != 0).any(dim=(0, 1))
    if not sampled.any():
        raise ValueError(f"data: {path} holds no sampled k-space (all zero)")
    mask = sampling_mask(sampled)
    logger.debug("%s: %s k-space %s", path, "fully sampled" if mask is None else "undersampled", tuple(kspace.shape))
    return KspaceVolume(path.stem, kspace, attrs, mask is None, mask)


def sampling_mask(sampled: torch.Tensor) -> torch.Tensor | None:
    """The sampling of a (W,) or (H,W) bool map of sampled positions: None when it is one contiguous
    block (fully sampled, possibly zero-padded), a (W,) line mask when it is whole sampled columns
    over one contiguous band of rows, else the (H,W) pattern."""
    if sampled.dim() == 1:
        return None if is_contiguous(sampled) else sampled
    rows, columns = sampled.any(dim=1), sampled.any(dim=0)
    separable = bool((sampled == (rows[:, None] & columns[None, :])).all())
    if separable and is_contiguous(rows):
        return None if is_contiguous(columns) else columns
    return sampled


def h5_is_fully_sampled(path) -> bool:
    """Whether the fastMRI h5 volume in ``path`` is fully sampled, as :func:`load_volume` decides, from
    its first slice rather than the whole file: one with a ``mask`` dataset is undersampled."""
    with h5py.File(path, "r") as hf:
        readable = "kspace" in hf and isinstance(hf["kspace"], h5py.Dataset) and hf["kspace"].ndim in (3, 4)
        if "mask" in hf or not readable:
            return "mask" not in hf and load_volume(path).fully_sampled  # an unreadable one raises with the reason
        sampled = np.asarray(hf["kspace"][0]) != 0
    sampled = torch.from_numpy(sampled.any(axis=0) if sampled.ndim == 3 else sampled)
    if not sampled.any():  # an empty first slice says nothing
        return load_volume(path).fully_sampled
    return sampling_mask(sampled) is None


def load_volumes(path) -> list[KspaceVolume]:
    """Every volume at ``path`` (a file or a folder), loaded in name order."""
    return [load_volume(file) for file in volume_files(path)]


class VolumeSlices(torch.utils.data.Dataset):
    """The slices of the fully sampled volumes at ``path`` (a file, or a folder of h5 / cfl / npy
    volumes), for training: item ``i`` is ``{"kspace": (C,H,W) complex64}``; ``samples[i]`` is its
    (volume index, slice index) and ``names`` the volumes' names.

    fastMRI h5 slices are read one at a time, as fastMRI's SliceDataset reads them (files too large to
    load whole); cfl and npy volumes are loaded once. Undersampled volumes are refused (ValueError
    naming the file): supervised training needs the fully sampled data.
    """

    def __init__(self, path, loaded: dict[Path, KspaceVolume] | None = None):
        """``loaded``: cfl / npy volumes already read (by file), so they are not read again."""
        loaded = loaded or {}
        files = volume_files(path)
        h5_files = [file for file in files if file.suffix == ".h5"]
        for file in h5_files:
            with h5py.File(file, "r") as hf:
                if "mask" in hf:
                    raise ValueError(f"data: {file} is undersampled (it has a 'mask'); training needs fully sampled "
                                     "k-space")
        self._h5 = FastMRISliceDataset(h5_files) if h5_files else None
        self._loaded: dict[int, torch.Tensor] = {}
        self.names, self.samples, self._where = [], [], []
        h5_slices = iter(range(len(self._h5) if self._h5 else 0))
        for file in files:
            index = len(self.names)
            self.names.append(file.stem)
            if file.suffix == ".h5":
                count = next(volume.num_slices for volume in self._h5.volumes if volume.path == file)
                self._where += [("h5", next(h5_slices)) for _ in range(count)]
            else:
                volume = loaded.get(file) or load_volume(file)
                if not volume.fully_sampled:
                    raise ValueError(f"data: {file} is undersampled ({volume.sampling}); training needs fully "
                                     "sampled k-space")
                self._loaded[index] = volume.kspace
                count = volume.num_slices
                self._where += [("loaded", (index, s)) for s in range(count)]
            self.samples += [(index, s) for s in range(count)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        kind, where = self._where[index]
        if kind == "h5":
            return {"kspace": self._h5[where]["kspace"]}
        volume, slice_index = where
        return {"kspace": self._loaded[volume][slice_index]}


def is_contiguous(columns: torch.Tensor) -> bool:
    """Whether the True entries of a 1D bool tensor form one unbroken run."""
    indices = columns.nonzero().flatten()
    return bool(indices.numel() > 0 and indices[-1] - indices[0] + 1 == indices.numel())


def _complex_tensor(path: Path, array: np.ndarray, layouts: str) -> torch.Tensor:
    if not np.iscomplexobj(array):
        raise ValueError(f"data: {path} holds {array.dtype} data; expected complex k-space {layouts}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.complex64))


def _read_h5(path: Path) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    try:
        with h5py.File(path, "r") as hf:
            if "kspace" not in hf:
                raise ValueError(f"data: {path} has no 'kspace' dataset (keys: {sorted(hf.keys())})")
            dataset = hf["kspace"]
            if not isinstance(dataset, h5py.Dataset) or dataset.ndim not in (3, 4):
                shape = getattr(dataset, "shape", "a group")
                raise ValueError(f"data: {path}: 'kspace' is {shape}; expected (S,C,H,W) multicoil or (S,H,W) "
                                 "single-coil k-space")
            kspace = _complex_tensor(path, dataset[()], "(S,C,H,W)")
            attrs = dict(hf.attrs)
            if "ismrmrd_header" in hf:
                attrs.update(parse_ismrmrd_header(hf["ismrmrd_header"][()], path))
            mask = torch.from_numpy(np.asarray(hf["mask"]).astype(bool)) if "mask" in hf else None
    except OSError as err:
        raise ValueError(f"data: {path} is not a readable h5 file (corrupt or truncated?): {err}") from err
    return (kspace.unsqueeze(1) if kspace.dim() == 3 else kspace), attrs, mask


def _read_cfl(path: Path) -> tuple[torch.Tensor, dict, None]:
    array = read_cfl(path)
    dims = array.shape + (1,) * max(0, 4 - array.ndim)
    extra = [i for i, d in enumerate(dims) if i >= 2 and d > 1]
    if len(extra) > 1 or (extra and extra[0] not in (2, 3)):
        raise ValueError(f"data: {path} has BART dims {list(array.shape)}; expected [H W C] or [H W 1 C] "
                         "(readout, phase encode, coils; other dimensions 1)")
    coils = dims[extra[0]] if extra else 1
    kspace = np.moveaxis(array.reshape(dims[0], dims[1], coils), -1, 0)  # (C, H, W)
    return _complex_tensor(path, kspace, "[H W C]").unsqueeze(0), {}, None


def _read_npy(path: Path) -> tuple[torch.Tensor, dict, None]:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"data: {path} is not a readable .npy file (corrupt or truncated?): {err}") from err
    if array.ndim not in (3, 4):
        raise ValueError(f"data: {path} holds an array of shape {array.shape}; expected complex k-space "
                         "(C,H,W) or (S,C,H,W)")
    kspace = _complex_tensor(path, array, "(C,H,W) or (S,C,H,W)")
    return (kspace.unsqueeze(0) if kspace.dim() == 3 else kspace), {}, None
