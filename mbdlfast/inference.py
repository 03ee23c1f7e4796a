"""Optimized inference for the reconstruction models (DEQ, MoDL, VarNet, E2E-VarNet).

:func:`optimize_for_inference` wraps a trained model in :class:`OptimizedModel`, a callable with the
model's call signature that runs it under one :class:`InferenceSettings`:

* ``backend``: the operator backend of :mod:`mbdlfast.ops` (``"auto"``: the dispatcher's pick, the
  fused kernels on CPU and on a GPU whose committed measurement found them faster, else torch's
  shift-free path; ``"naive"``: the fastMRI-style operator the paper timed);
* ``channels_last``: CNN weights and inputs in NHWC, the layout tensor cores and oneDNN prefer;
* ``precision``: ``"fp32"``, ``"tf32"`` (CUDA matmuls/convolutions), ``"bf16"`` (autocast of the CNNs
  only; the physics stays complex64) or ``"auto"`` (bf16, else tf32, else fp32 on CUDA; fp32 on
  CPU). A low precision is kept only if it passes the PSNR guard against fp32 on the example
  inputs, else the wrapper falls back (and logs why);
* ``cuda_graphs``: replay the whole forward as one CUDA graph for a fixed input shape (the
  physics' buffers refilled in place). For the models whose forward never waits on the device
  (VarNet, E2E-VarNet, MoDL, whose CG runs its iterations without a host check): the DEQ's
  Anderson stops on data-dependent residuals (a host decision), which a graph cannot express.
  A capture that fails falls back to eager and says so;
* ``cudnn_benchmark``: let cuDNN pick the fastest convolution algorithm per shape;
* DEQ solver: ``solver``, a name of :data:`mbdlfast.deq.SOLVERS` (``"anderson"``; ``"reference_anderson"``:
  the public DEQ code's algorithm), run by the DEQ's own forward, Anderson with real mixing weights (the DEQ's map is only
  real-linear), and ``tol`` / ``max_iter`` overrides, so dense and pruned DEQs are timed at the same
  tolerance.

:data:`BASELINE` is the paper-style pipeline (naive operator, fp32 eager, the public Anderson);
:data:`OPTIMIZED` turns everything on. ``OptimizedModel.applied`` lists what took effect.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from mbdlfast import ops
from mbdlfast.deq import SOLVERS, accepted_kwargs
from mbdlfast.metrics import psnr_batch
from mbdlfast.models import DEQ, EDSR, DnCNN, MoDL, Unet, VarNet
from mbdlfast.ops.dispatch import BACKENDS
from mbdlfast.physics.sense import SenseOperator

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "bf16", "auto")
CNN_TYPES = (EDSR, DnCNN, Unet)
_LOW_PRECISION_ORDER = ("bf16", "tf32")


@dataclass(frozen=True)
class InferenceSettings:
    """How :class:`OptimizedModel` runs a model; see the module docstring.

    ``cuda_graphs``: True, False or "auto" (on CUDA for the fixed-iteration models).
    ``psnr_guard_db``: the largest PSNR loss against ``target`` a low precision may cost (when the
    guard has a target); ``min_agreement_db``: without a target, the PSNR of the low-precision
    output against the fp32 output that a low precision must reach. ``tol`` / ``max_iter``: DEQ
    solver overrides (None: the model's own). ``check_every``: how often :func:`~mbdlfast.deq.anderson`
    looks at convergence on the host (None: every step on CPU, where a host read costs nothing and
    stopping late costs f-evaluations; the solver's default on CUDA, where each read is a sync).
    """

    backend: str = "auto"
    channels_last: bool = True
    precision: str = "auto"
    cuda_graphs: bool | str = "auto"
    cudnn_benchmark: bool = True
    solver: str = "anderson"
    tol: float | None = None
    max_iter: int | None = None
    check_every: int | None = None
    psnr_guard_db: float = 0.05
    min_agreement_db: float = 50.0

    def __post_init__(self):
        if self.backend != "auto" and self.backend not in BACKENDS:
            raise ValueError(f"backend: expected 'auto' or one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.cuda_graphs not in (True, False, "auto"):
            raise ValueError(f"cuda_graphs: expected True, False or 'auto', got {self.cuda_graphs!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {sorted(SOLVERS)}, got {self.solver!r}")
        if self.tol is not None and not (isinstance(self.tol, (int, float)) and 0 < self.tol and math.isfinite(self.tol)):
            raise ValueError(f"tol: expected a finite number > 0 or None, got {self.tol!r}")
        for name in ("max_iter", "check_every"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name}: expected an integer >= 1 or None, got {value!r}")
        for name in ("psnr_guard_db", "min_agreement_db"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        for name in ("channels_last", "cudnn_benchmark"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")


BASELINE = InferenceSettings(backend="naive", channels_last=False, precision="fp32", cuda_graphs=False,
                             cudnn_benchmark=False, solver="reference_anderson")
OPTIMIZED = InferenceSettings()


def run_cnn_autocast(net: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``net(x)`` under autocast to ``dtype``, returned in float32 (complex views need it)."""
    with torch.autocast(x.device.type, dtype=dtype):
        return net(x).float()


class PreparedCNN(nn.Module):
    """A real CNN with its input in the chosen memory format and, optionally, autocast."""

    def __init__(self, net: nn.Module, channels_last: bool):
        super().__init__()
        self.net = net
        self.channels_last = channels_last
        self.autocast_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return self.net(x)
        return run_cnn_autocast(self.net, x, self.autocast_dtype)


def _wrap_cnns(module: nn.Module, channels_last: bool) -> list[PreparedCNN]:
    """Replace every outermost CNN (EDSR, DnCNN, Unet) below ``module`` by a :class:`PreparedCNN`."""
    wrapped = []
    for name, child in list(module.named_children()):
        if isinstance(child, CNN_TYPES):
            if channels_last:
                child.to(memory_format=torch.channels_last)
            prepared = PreparedCNN(child, channels_last)
            setattr(module, name, prepared)
            wrapped.append(prepared)
        else:
            wrapped.extend(_wrap_cnns(child, channels_last))
    return wrapped


@contextlib.contextmanager
def _cuda_flags(device: torch.device, tf32: bool, benchmark: bool) -> Iterator[None]:
    """cuDNN benchmark and TF32 (matmul and convolution) set for the block, restored after."""
    if device.type != "cuda":
        yield
        return
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=benchmark, allow_tf32=tf32):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def _magnitude(output: torch.Tensor) -> torch.Tensor:
    """The (B,H,W) magnitude image of a model output (a complex or an RSS image) for the PSNR guard."""
    if output.dim() != 3:
        raise ValueError(f"the PSNR guard compares (B,H,W) images, got an output of shape {tuple(output.shape)}; "
                         "use precision='fp32' or a VarNet with output='image' or 'rss'")
    return output.detach().abs().float()


def _device_of(example_inputs: tuple) -> torch.device:
    for value in example_inputs:
        if isinstance(value, torch.Tensor):
            return value.device
    raise ValueError("example_inputs: expected at least one tensor")


class OptimizedModel(nn.Module):
    """``model`` run under ``settings``; call it like the model. See :func:`optimize_for_inference`.

    Attributes: ``applied`` (what took effect, in words), ``skipped`` (what did not, and why),
    ``precision`` (the one in use), ``last_info`` (the DEQ solver's info after a call).
    """

    def __init__(self, model: nn.Module, settings: InferenceSettings, device: torch.device):
        super().__init__()
        self.model = model
        self.settings = settings
        self.device = device
        self.applied: list[str] = []
        self.skipped: list[str] = []
        self.precision = "fp32"
        self.last_info: dict | None = None
        self._graph: _GraphedForward | None = None
        self.cnns = _wrap_cnns(model, settings.channels_last)
        self.applied.append(f"backend={settings.backend}")
        if settings.channels_last:
            self.applied.append(f"channels_last ({len(self.cnns)} CNN(s))")
        if settings.cudnn_benchmark:
            (self.applied if device.type == "cuda" else self.skipped).append(
                "cudnn_benchmark" + ("" if device.type == "cuda" else " (not CUDA)"))
        if isinstance(model, DEQ):
            overrides = {k: v for k, v in (("tol", settings.tol), ("max_iter", settings.max_iter)) if v is not None}
            if settings.check_every is not None or device.type == "cpu":
                overrides["check_every"] = settings.check_every or 1
            self.solver_kwargs = accepted_kwargs(settings.solver, {**model.solver_kwargs, **overrides})
            self.applied.append(f"solver={settings.solver} tol={self.solver_kwargs['tol']:g}")
        elif settings.tol is not None or settings.max_iter is not None or settings.solver != "anderson":
            self.skipped.append(f"solver settings ({type(model).__name__} has no fixed-point solver)")

    @property
    def tol(self) -> float | None:
        """The DEQ solver's tolerance (None for the unrolled models)."""
        return self.solver_kwargs["tol"] if isinstance(self.model, DEQ) else None

    def _set_precision(self, precision: str) -> None:
        self.precision = precision
        dtype = torch.bfloat16 if precision == "bf16" else None
        for cnn in self.cnns:
            cnn.autocast_dtype = dtype

    def eager(self, *args, **kwargs):
        """One forward without the CUDA graph."""
        with ops.use_backend(self.settings.backend), \
                _cuda_flags(self.device, self.precision == "tf32", self.settings.cudnn_benchmark), torch.no_grad(), \
                self._solver_settings():
            output = self.model(*args, **kwargs)
        self.last_info = self.model.last_info if isinstance(self.model, DEQ) else None
        return output

    @contextlib.contextmanager
    def _solver_settings(self) -> Iterator[None]:
        """The DEQ runs its own forward with the configured solver and its settings for the call."""
        if not isinstance(self.model, DEQ):
            yield
            return
        saved = self.model.solver, self.model.solver_kwargs
        self.model.solver, self.model.solver_kwargs = self.settings.solver, self.solver_kwargs
        try:
            yield
        finally:
            self.model.solver, self.model.solver_kwargs = saved

    def forward(self, *args, **kwargs):
        if self._graph is not None and self._graph.matches(args, kwargs):
            return self._graph(args)
        return self.eager(*args, **kwargs)


class _GraphedForward:
    """The whole forward captured as one CUDA graph for fixed input shapes: tensors and the physics'
    buffers live in static copies, refilled in place before each replay."""

    def __init__(self, wrapper: OptimizedModel, example_inputs: tuple):
        self.signature = [_signature(a) for a in example_inputs]
        self.static_inputs = [a.clone() if isinstance(a, torch.Tensor) else
                              copy.deepcopy(a) if isinstance(a, SenseOperator) else a for a in example_inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                wrapper.eager(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = wrapper.eager(*self.static_inputs)

    def matches(self, args: tuple, kwargs: dict) -> bool:
        return not kwargs and [_signature(a) for a in args] == self.signature

    def __call__(self, args: tuple) -> torch.Tensor:
        for static, value in zip(self.static_inputs, args):
            if isinstance(static, torch.Tensor):
                static.copy_(value)
            elif isinstance(static, SenseOperator):
                for static_buffer, buffer in zip(static.buffers(), value.buffers()):
                    static_buffer.copy_(buffer)
        self.graph.replay()
        return self.static_output.clone()


def _signature(value):
    """What a graph's input must keep: a tensor's shape and dtype, a physics' layout and buffers' shapes."""
    if isinstance(value, torch.Tensor):
        return value.shape, value.dtype
    if isinstance(value, SenseOperator):
        return (value.is_2d, value.compact, value.backend,
                tuple((name, b.shape, b.dtype) for name, b in value.named_buffers()))
    return value


def _choose_precision(wrapper: OptimizedModel, example_inputs: tuple, target: torch.Tensor | None) -> None:
    """Set the lowest precision that passes the PSNR guard against fp32 (see the module docstring)."""
    settings, device = wrapper.settings, wrapper.device
    requested = settings.precision
    if requested == "fp32":
        return
    if requested == "auto":
        if device.type != "cuda":
            wrapper.skipped.append("low precision (auto uses it on CUDA only)")
            return
        candidates = _LOW_PRECISION_ORDER
    else:
        if requested == "tf32" and device.type != "cuda":
            wrapper.skipped.append("tf32 (not CUDA)")
            return
        candidates = (requested,)
    reference = _magnitude(wrapper.eager(*example_inputs))
    for candidate in candidates:
        wrapper._set_precision(candidate)
        trial = _magnitude(wrapper.eager(*example_inputs))
        if target is not None:
            gt = _magnitude(target)
            loss = float((psnr_batch(gt, reference) - psnr_batch(gt, trial)).max())
            ok, why = loss <= settings.psnr_guard_db, f"PSNR loss {loss:.3f} dB (guard {settings.psnr_guard_db} dB)"
        else:
            agreement = float(psnr_batch(reference, trial, maxval=reference.amax()).min())
            ok, why = agreement >= settings.min_agreement_db, \
                f"agreement with fp32 {agreement:.1f} dB (guard {settings.min_agreement_db} dB)"
        if ok:
            wrapper.applied.append(f"precision={candidate} ({why})")
            return
        logger.warning("precision %s rejected by the PSNR guard: %s; falling back", candidate, why)
        wrapper.skipped.append(f"precision={candidate} ({why})")
    wrapper._set_precision("fp32")
    wrapper.applied.append("precision=fp32 (fallback)")


def optimize_for_inference(model: nn.Module, example_inputs: tuple, settings: InferenceSettings = OPTIMIZED, *,
                           target: torch.Tensor | None = None, **overrides) -> OptimizedModel:
    """A copy of ``model`` prepared for inference under ``settings`` (``overrides`` replace its fields).

    ``example_inputs``: the positional arguments of one model call (the shapes the CUDA graph is
    captured for, the data the precision guard runs on). ``target``: an optional ground-truth image
    batch for the guard (PSNR loss against it); without it a low precision must agree with fp32 to
    ``min_agreement_db``. The model itself is not modified. CUDA-only parts are skipped on CPU and
    listed in ``.skipped``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(model, (DEQ, MoDL, VarNet)):
        logger.info("optimize_for_inference: %s is not a known reconstruction model; solver and graph "
                    "settings do not apply", type(model).__name__)
    if not isinstance(example_inputs, tuple):
        raise TypeError(f"example_inputs: expected a tuple of positional arguments, got {type(example_inputs).__name__}")
    if not isinstance(settings, InferenceSettings):
        raise TypeError(f"settings: expected an InferenceSettings, got {type(settings).__name__}")
    settings = dataclasses.replace(settings, **overrides) if overrides else settings
    device = _device_of(example_inputs)
    wrapper = OptimizedModel(copy.deepcopy(model).eval(), settings, device)
    _choose_precision(wrapper, example_inputs, target)
    _maybe_capture_graph(wrapper, example_inputs)
    logger.info("optimize_for_inference(%s): applied %s; skipped %s", type(model).__name__, wrapper.applied,
                wrapper.skipped)
    return wrapper


def _maybe_capture_graph(wrapper: OptimizedModel, example_inputs: tuple) -> None:
    wanted = wrapper.settings.cuda_graphs
    if wanted is False:
        return
    if wrapper.device.type != "cuda":
        wrapper.skipped.append("cuda_graphs (not CUDA)")
        return
    if isinstance(wrapper.model, DEQ):
        wrapper.skipped.append("cuda_graphs (DEQ stops on data-dependent residuals)")
        return
    try:
        wrapper._graph = _GraphedForward(wrapper, example_inputs)
        wrapper.applied.append("cuda_graphs (whole forward)")
    except RuntimeError as err:  # e.g. a host synchronisation inside the forward
        logger.warning("cuda_graphs: capture failed, running eagerly: %s", err)
        wrapper.skipped.append(f"cuda_graphs (capture failed: {str(err).splitlines()[0]})")


__all__ = ["BASELINE", "InferenceSettings", "OPTIMIZED", "OptimizedModel", "optimize_for_inference"]
