"""Pruning at initialization: score every prunable weight of a freshly initialised network, keep the
``density`` fraction with the highest scores (one global top-k) and attach the masks
(:mod:`mbdlfast.prune.masking`), so the sparse network is then trained from that same initialization.

Methods (``METHODS``); all scores are "higher = keep":

* ``random``: i.i.d. uniform scores (seeded), the sanity baseline.
* ``magnitude``: |w|.
* ``snip`` (Lee et al., 2019): |g ⊙ w|, g the gradient of the loss summed over ``batches``.
* ``grasp`` (Wang et al., 2020): the paper scores S = −w ⊙ Hg and removes the weights with the
  HIGHEST S (their removal reduces the gradient flow least). Here the returned score is w ⊙ Hg = −S,
  so keeping the top-k of it is exactly the paper's (and its authors' code's) rule. Hg is a
  Hessian-gradient product by double backward through the loss.
* ``synflow`` (Tanaka et al., 2020), data-free: a float64 copy of the network with every parameter
  and buffer replaced by its absolute value (evaluation mode) is fed an all-ones input; the score is
  (∂R/∂w) ⊙ w with R the sum of the output. Biases and batch-norm shifts are zeroed in that copy:
  R then sums input-to-output paths only, so the synaptic flow through every layer is the same
  (SynFlow's conservation law; with biases, early layers carry less flow and collapse). Pruning is iterative, ``iterations`` (100) rounds with
  densities ``density**(k/iterations)``, each re-scoring the survivors; this is what avoids layer
  collapse. The input goes to the lowest common ancestor module of all prunable layers (for MoDL
  the DnCNN conv stack; override with ``network=<dotted name>``), of shape ``input_shape``
  (default: batch 1, the first prunable layer's input channels, 32 pixels per spatial dim).
* ``pun`` (pruning unrolled networks at initialization): per-weight keep-probabilities
  p = sigmoid(θ) are learned over the FROZEN initial weights. During the search each prunable
  layer's weight is ``w ⊙ m`` with m a binary-concrete (Gumbel-softmax) sample
  m = sigmoid((θ + log u − log(1 − u)) / τ), τ = ``temperature`` (0.2), drawn once per step and
  shared by every use of the weight in that step (MoDL applies its denoiser ``num_iter`` times).
  This is done with a temporary :mod:`torch.nn.utils.parametrize` parametrization of our own
  (:class:`RelaxedBernoulliMask`), so ``loss_fn`` sees the real model object; it is removed after
  the search, leaving the model's weights (and buffers) untouched. The objective is the training
  loss plus ``kl_weight`` · mean KL(Bernoulli(p) ‖ Bernoulli(ρ)), ρ = ``density``, optimised with
  Adam for ``steps`` steps; the scores are the probabilities p.

Structured (``structured=True``): a layer's weight scores are summed per OUTPUT channel and whole
output channels are kept by one global top-k over channels; ``density`` is then the fraction of
output channels kept. The last prunable layer (in module order) keeps all its channels, as they are
the network's outputs, and every other layer keeps at least its best channel (no layer collapse).
Only the output channel's weights are masked: its bias, the following batch norm's shift and the
next layer's input-channel weights are left alone, so a pruned channel carries a constant map
that the next layer can still use like a bias. The mask does not make anything faster: the
convolutions keep their shapes until the channels are physically removed (structured pruning,
:func:`mbdlfast.prune.prune_structured`).

Every data-driven method (``DATA_DRIVEN``) needs ``loss_fn(model, batch) -> scalar tensor`` and an
iterable ``batches``; scoring leaves the model's parameters, buffers (batch-norm statistics),
``requires_grad`` flags and train/eval mode as they were.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from mbdlfast.prune.masking import apply_masks, masks_from_scores, prunable_weights

logger = logging.getLogger(__name__)

METHODS = ("random", "magnitude", "snip", "grasp", "synflow", "pun")
DATA_DRIVEN = frozenset({"snip", "grasp", "pun"})

LossFn = Callable[[nn.Module, object], torch.Tensor]
Scores = dict[str, torch.Tensor]

__all__ = ["DATA_DRIVEN", "METHODS", "RelaxedBernoulliMask", "channel_masks", "prune_at_init", "score_weights"]


# ------------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _preserved_state(model: nn.Module):
    """Restore the buffers, ``requires_grad`` flags and train/eval mode of ``model`` on exit."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {name: module.training for name, module in model.named_modules()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])
        for name, p in model.named_parameters():
            if name in flags:
                p.requires_grad_(flags[name])
        for name, module in model.named_modules():
            if name in modes:
                module.training = modes[name]


def _output_channel_dim(module: nn.Module) -> int:
    """Dimension of ``module.weight`` that indexes its output channels/features."""
    return 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0


def _checked_loss(loss_fn: LossFn, model: nn.Module, batch) -> torch.Tensor:
    loss = loss_fn(model, batch)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn: expected a scalar tensor, got {type(loss).__name__}"
                         f"{'' if not isinstance(loss, torch.Tensor) else f' of shape {tuple(loss.shape)}'}")
    if not torch.isfinite(loss.detach()).all():
        raise ValueError(f"loss_fn: returned a non-finite loss {loss.item()}")
    if not loss.requires_grad:
        raise ValueError("loss_fn: the loss does not depend on the model's weights (no autograd graph)")
    return loss.reshape(())


def _weight_gradients(loss: torch.Tensor, weights: list[torch.Tensor], *, create_graph: bool = False) -> list[torch.Tensor]:
    """d loss / d weight for each weight (zeros for a weight the loss does not use)."""
    grads = torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, weights)]


# ------------------------------------------------------------------------------------------ scorers


def _random_scores(layers, density, loss_fn, batches, binarise, *, seed: int = 0) -> Scores:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(layer.weight.shape, generator=generator).to(layer.weight.device)
            for name, layer in layers.items()}


def _magnitude_scores(layers, density, loss_fn, batches, binarise) -> Scores:
    return {name: layer.weight.detach().abs() for name, layer in layers.items()}


def _summed_gradients(loss_fn: LossFn, model: nn.Module, batches, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d weight summed over ``batches``."""
    total = [torch.zeros_like(w) for w in weights]
    for batch in batches:
        for acc, grad in zip(total, _weight_gradients(_checked_loss(loss_fn, model, batch), weights)):
            acc += grad
    return total


def _snip_scores(layers, density, loss_fn, batches, binarise, *, model) -> Scores:
    weights = [layer.weight for layer in layers.values()]
    total = _summed_gradients(loss_fn, model, batches, weights)
    return {name: (g * w).detach().abs() for name, g, w in zip(layers, total, weights)}


def _grasp_scores(layers, density, loss_fn, batches, binarise, *, model) -> Scores:
    weights = [layer.weight for layer in layers.values()]
    gradient = _summed_gradients(loss_fn, model, batches, weights)
    hessian_gradient = [torch.zeros_like(w) for w in weights]
    for batch in batches:
        grads = _weight_gradients(_checked_loss(loss_fn, model, batch), weights, create_graph=True)
        inner = sum((g * fixed).sum() for g, fixed in zip(grads, gradient) if g.requires_grad)
        if isinstance(inner, torch.Tensor) and inner.requires_grad:
            for acc, hg in zip(hessian_gradient, _weight_gradients(inner, weights)):
                acc += hg
    # w ⊙ Hg = −(GraSP's S): keeping its top-k removes the weights of highest S, as the paper does.
    return {name: (w * hg).detach() for name, w, hg in zip(layers, weights, hessian_gradient)}


def _common_ancestor(names: Iterable[str]) -> str:
    """The dotted name of the deepest module containing every module of ``names`` ('' = the root)."""
    split = [name.split(".") for name in names]
    prefix = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return ".".join(prefix)


SYNFLOW_PRIOR_SIZE = 64  # the image side SynFlow probes an untrained prior at (5 levels of 2x: 2x2 at the bottom)


def _default_input_shape(model: nn.Module, network: str, layer: nn.Module) -> tuple[int, ...]:
    """SynFlow's all-ones input: for an untrained prior (a model with ``code_shape``, whose ``layers``
    take the code) its code at a 64x64 output, else the first layer's input at 32 pixels per side."""
    if hasattr(model, "code_shape") and network in ("", "layers"):
        return (1, *model.code_shape(SYNFLOW_PRIOR_SIZE, SYNFLOW_PRIOR_SIZE))
    if isinstance(layer, nn.Linear):
        return (1, layer.in_features)
    spatial = {1: (32,), 2: (32, 32), 3: (16, 16, 16)}[layer.weight.dim() - 2]
    return (1, layer.in_channels, *spatial)


_SHIFT_NAMES = ("bias", "running_mean")  # zeroed in SynFlow's probe: R then counts input-output paths only


def _synflow_scores(layers, density, loss_fn, batches, binarise, *, model, iterations: int = 100,
                    network: str | None = None, input_shape: tuple[int, ...] | None = None) -> Scores:
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations: expected a positive integer, got {iterations!r}")
    network = _common_ancestor(layers) if network is None else network
    modules = dict(model.named_modules())
    if network not in modules:
        raise ValueError(f"network: {network!r} is not a submodule of the model")
    prefix = f"{network}." if network else ""
    outside = [name for name in layers if name != network and not name.startswith(prefix)]
    if outside:
        raise ValueError(f"network: {network!r} does not contain the prunable layers {outside[:4]}")
    shape = (tuple(input_shape) if input_shape is not None
             else _default_input_shape(model, network, next(iter(layers.values()))))

    probe = copy.deepcopy(modules[network]).double().eval()  # linearised |θ| network, never the model itself
    with torch.no_grad():
        for name, tensor in [*probe.named_parameters(), *probe.named_buffers()]:
            if tensor.is_floating_point():
                tensor.zero_() if name.endswith(_SHIFT_NAMES) else tensor.abs_()
    local = {name: "weight" if name == network else f"{name[len(prefix):]}.weight" for name in layers}
    magnitudes = {name: dict(probe.named_parameters())[local[name]].detach().clone() for name in layers}
    device = next(iter(magnitudes.values())).device
    ones = torch.ones(shape, dtype=torch.float64, device=device)
    alive = {name: torch.ones_like(m) for name, m in magnitudes.items()}
    for iteration in range(1, iterations + 1):
        weights = {name: (magnitudes[name] * alive[name]).requires_grad_() for name in layers}
        output = torch.func.functional_call(probe, {local[n]: w for n, w in weights.items()}, (ones,))
        grads = _weight_gradients(output.sum(), list(weights.values()))
        scores = {name: (g * w).detach() for (name, w), g in zip(weights.items(), grads)}
        if not all(torch.isfinite(s).all() for s in scores.values()):
            raise FloatingPointError("synflow: the linearised network overflowed float64; use a smaller input_shape")
        alive = binarise(scores, density ** (iteration / iterations), alive)
    # The last round's scores, −1 where an earlier round pruned: their top-k at ``density`` is the
    # iterative mask itself (all final scores are >= 0).
    return {name: torch.where(alive[name].bool(), scores[name], -1.0).to(layers[name].weight.dtype)
            for name in layers}


class RelaxedBernoulliMask(nn.Module):
    """Parametrization ``weight ↦ weight ⊙ sigmoid((logits + noise) / temperature)``: a binary-concrete
    (Gumbel-softmax) relaxation of a Bernoulli(sigmoid(logits)) keep-mask, differentiable in the
    logits. ``noise`` is logistic noise log u − log(1 − u), redrawn by :meth:`resample`."""

    def __init__(self, logits: torch.Tensor, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        self.logits = nn.Parameter(logits)
        self.temperature = float(temperature)
        self.register_buffer("noise", torch.zeros_like(logits))

    def resample(self, generator: torch.Generator) -> None:
        uniform = torch.rand(self.logits.shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        self.noise.copy_(torch.log(uniform) - torch.log1p(-uniform))

    def relaxed_mask(self) -> torch.Tensor:
        return torch.sigmoid((self.logits + self.noise) / self.temperature)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.relaxed_mask()


def bernoulli_kl(logits: torch.Tensor, rho: float) -> torch.Tensor:
    """Mean KL(Bernoulli(sigmoid(logits)) ‖ Bernoulli(rho)) over the entries (numerically stable)."""
    rho = min(max(rho, 1e-6), 1.0 - 1e-6)
    p = torch.sigmoid(logits)
    log_p, log_q = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    return (p * (log_p - math.log(rho)) + (1 - p) * (log_q - math.log1p(-rho))).mean()


def _pun_scores(layers, density, loss_fn, batches, binarise, *, model, steps: int = 100, lr: float = 0.1,
                temperature: float = 0.2, kl_weight: float = 1.0, init_probability: float = 0.5, seed: int = 0,
                progress: bool = False) -> Scores:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {steps!r}")
    if not 0.0 < init_probability < 1.0:
        raise ValueError(f"init_probability: expected a probability in (0, 1), got {init_probability}")
    if kl_weight < 0 or lr <= 0:
        raise ValueError(f"kl_weight, lr: expected kl_weight >= 0 and lr > 0, got {kl_weight}, {lr}")
    for p in model.parameters():  # the initialization is frozen; only the logits learn
        p.requires_grad_(False)
    start = math.log(init_probability) - math.log1p(-init_probability)
    masks = {name: RelaxedBernoulliMask(torch.full_like(layer.weight, start), temperature)
             for name, layer in layers.items()}
    generator = torch.Generator().manual_seed(seed)
    for name, layer in layers.items():
        parametrize.register_parametrization(layer, "weight", masks[name])
    try:
        optimizer = torch.optim.Adam([m.logits for m in masks.values()], lr=lr)
        for step in tqdm(range(steps), desc="pun search", disable=not progress, dynamic_ncols=True):
            for mask in masks.values():
                mask.resample(generator)
            with parametrize.cached():
                task = _checked_loss(loss_fn, model, batches[step % len(batches)])
            kl = bernoulli_kl(torch.cat([m.logits.flatten() for m in masks.values()]), density)
            optimizer.zero_grad(set_to_none=True)
            (task + kl_weight * kl).backward()
            optimizer.step()
            if step % max(1, steps // 10) == 0 or step == steps - 1:
                logger.debug("pun step %d: loss %.5g, KL %.4g", step, task.item(), kl.item())
    finally:
        for layer in layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    return {name: torch.sigmoid(mask.logits.detach()) for name, mask in masks.items()}


_SCORERS = {"random": _random_scores, "magnitude": _magnitude_scores, "snip": _snip_scores, "grasp": _grasp_scores,
            "synflow": _synflow_scores, "pun": _pun_scores}


# ------------------------------------------------------------------------------------------ binarising


def channel_masks(scores: Scores, layers: dict[str, nn.Module], density: float, *,
                  alive: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Whole-output-channel masks: channel score = sum of its weight scores, one global top-k keeping
    ``round(density · channels)`` of the channels of all but the last layer (which keeps all), at
    least one per layer; ``alive`` masks are never revived. See the module docstring."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density: expected a fraction in (0, 1], got {density}")
    names = list(layers)
    candidates, last = names[:-1], names[-1]
    if not candidates:
        raise ValueError("structured: the model has one prunable layer, whose output channels are the network's outputs")
    channel_scores, channel_alive = {}, {}
    for name in candidates:
        dim = _output_channel_dim(layers[name])
        moved = scores[name].detach().float().movedim(dim, 0)
        channel_scores[name] = moved.reshape(moved.shape[0], -1).sum(dim=1).cpu()
        channel_alive[name] = (torch.ones_like(channel_scores[name], dtype=torch.bool) if alive is None else
                               alive[name].movedim(dim, 0).reshape(moved.shape[0], -1).amax(dim=1).bool().cpu())
    keep = round(density * sum(s.numel() for s in channel_scores.values()))
    if keep < len(candidates):
        raise ValueError(f"density: {density} keeps {keep} channels, fewer than one per prunable layer ({len(candidates)})")
    ranked = []
    for name in candidates:
        ranking = torch.where(channel_alive[name], channel_scores[name], torch.tensor(float("-inf")))
        ranking[ranking.argmax()] = float("inf")  # every layer keeps its best channel
        ranked.append(ranking)
    flat = torch.cat(ranked)
    if keep > int((flat > float("-inf")).sum()):
        raise ValueError(f"density: {density} keeps {keep} channels but fewer are alive")
    kept = torch.zeros(flat.numel(), dtype=torch.bool)
    kept[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for name in candidates:
        count = channel_scores[name].numel()
        dim, shape = _output_channel_dim(layers[name]), layers[name].weight.shape
        view = [1] * len(shape)
        view[dim] = count
        masks[name] = kept[start:start + count].view(view).expand(shape).to(layers[name].weight).contiguous()
        start += count
    masks[last] = torch.ones_like(layers[last].weight) if alive is None else alive[last].clone()
    return masks


# ------------------------------------------------------------------------------------------ public API


def _check_arguments(model, method, density, loss_fn, batches, method_kwargs) -> tuple[dict, list | None]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if method not in _SCORERS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise ValueError(f"density: expected a fraction in (0, 1] of the prunable weights to keep, got {density!r}")
    options = [p.name for p in inspect.signature(_SCORERS[method]).parameters.values()
               if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "model"]
    unknown = sorted(set(method_kwargs) - set(options))
    if unknown:
        raise ValueError(f"{method}: unknown option(s) {unknown}; known: {options}")
    if method in DATA_DRIVEN:
        if loss_fn is None or batches is None:
            raise ValueError(f"method {method!r} is data-driven: pass loss_fn(model, batch) -> scalar and batches")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn: expected a callable (model, batch) -> scalar, got {type(loss_fn).__name__}")
        batches = list(batches)
        if not batches:
            raise ValueError("batches: is empty")
    layers = prunable_weights(model)
    masked = [name for name, layer in layers.items() if parametrize.is_parametrized(layer, "weight")]
    if masked:
        raise ValueError(f"model: layers {masked[:4]} are already masked or parametrized; pruning at initialization "
                         "expects a dense network (call mbdlfast.prune.remove_masks first)")
    return layers, batches


def score_weights(model: nn.Module, method: str, density: float, *, loss_fn: LossFn | None = None,
                  batches: Iterable | None = None, structured: bool = False, **method_kwargs) -> Scores:
    """The per-weight scores of ``method`` (higher = keep), by prunable layer name; the model is left
    as it was. ``density`` is needed by the methods whose scores depend on the target (SynFlow's
    schedule, PUN's prior); ``structured`` only matters to SynFlow, whose rounds prune channels then."""
    layers, batches = _check_arguments(model, method, density, loss_fn, batches, method_kwargs)

    def binarise(scores, target, alive):
        return channel_masks(scores, layers, target, alive=alive) if structured else \
            masks_from_scores(scores, target, alive=alive)

    scorer = _SCORERS[method]
    if "model" in inspect.signature(scorer).parameters:
        method_kwargs["model"] = model
    with _preserved_state(model):
        for layer in layers.values():
            layer.weight.requires_grad_(True)
        return scorer(layers, density, loss_fn, batches, binarise, **method_kwargs)


def prune_at_init(model: nn.Module, method: str, density: float, *, loss_fn: LossFn | None = None,
                  batches: Iterable | None = None, structured: bool = False, **method_kwargs) -> dict[str, torch.Tensor]:
    """Score the prunable weights of ``model`` with ``method``, keep the top ``density`` fraction
    (of weights; of output channels when ``structured``), attach the masks in place and return them.

    ``loss_fn(model, batch) -> scalar`` and ``batches`` (an iterable, read fully) are required by
    ``snip``, ``grasp`` and ``pun``. ``method_kwargs`` are the method's options: ``seed``
    (random, pun), ``iterations``, ``network``, ``input_shape`` (synflow), ``steps``, ``lr``,
    ``temperature``, ``kl_weight``, ``init_probability``, ``progress`` (pun).
    """
    scores = score_weights(model, method, density, loss_fn=loss_fn, batches=batches, structured=structured,
                           **method_kwargs)
    layers = prunable_weights(model)
    masks = channel_masks(scores, layers, density) if structured else masks_from_scores(scores, density)
    apply_masks(model, masks)
    kept = sum(float(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    logger.info("pruned at init with %s%s: %.4f of the prunable weights kept", method,
                " (channels)" if structured else "", kept)
    return masks
