"""Structured (channel) pruning of trained reconstruction networks with torch-pruning's DepGraph.

What is pruned: the real 2-channel CNNs inside a model (its *networks*): the ``net`` of every
:class:`~mbdlfast.models.ComplexAdapter` (the DEQ / MoDL denoiser, the image-domain EDSR / DnCNN),
the ``unet`` of every :class:`~mbdlfast.models.NormUnet` (VarNet cascades), every
:class:`~mbdlfast.models.ResUNet` (USRNet's prior; its hyper-network and data module are not
networks here and keep every channel, as in the seed), or the model itself when it is a plain
real CNN. Whole channels are removed by torch-pruning's ``BasePruner`` (its
``MetaPruner`` / ``MagnitudePruner``) ranked by group magnitude importance, as in the published
pruning code.

Why the networks are traced, not the whole model: the dependency graph is built by tracing one
forward with autograd. The networks only meet the rest of a model through their 2 image channels,
which are never pruned (the output convolutions are ignored, the inputs are data), so tracing them
on their real 2-channel inputs gives the same groups as a whole-model trace (the tests check that
both prune a DEQ and a VarNet identically) while avoiding what the tracer handles badly: a DEQ's
graph holds only the final JFB application of T (the Anderson iterations run without gradients)
after a full solve, torch-pruning takes scalar parameters (DEQ's α, γ; VarNet's dc_weight) for
prunable "unwrapped parameters", its shape inference hits its recursion limit on MoDL and
E2E-VarNet, and complex tensors and custom autograd ops are opaque to it. The networks are traced
together in one graph, so global pruning ranks the channels of all of them (e.g. every VarNet
cascade) at once. Their inputs are captured from one forward of the model on ``example_inputs``
under the pure-torch operator backend, stopped as soon as every network has been called once (a
DEQ does not run its solve).
"""
from __future__ import annotations

import contextlib
import copy
import logging

import torch
from torch import nn

from mbdlfast import ops
from mbdlfast._validation import check_int
from mbdlfast.models import ComplexAdapter, NormUnet, ResUNet, SensitivityModel

logger = logging.getLogger(__name__)

#: importance name -> the p of torch-pruning's GroupMagnitudeImportance. "l1" is what the published
#: pruning code uses, "l2" what the paper's text describes.
IMPORTANCE_NORMS = {"l1": 1, "l2": 2}


class _AllNetworksCalled(Exception):
    """Raised by the capture hook to stop the model's forward once every network has its input."""


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """Evaluation mode inside the block (no batch-norm statistics updates); each submodule's own
    mode is restored after it (torch-pruning's tracer and counter leave modules in eval mode)."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.train(training)


def prunable_networks(model: nn.Module) -> dict[str, nn.Module]:
    """The real CNNs of ``model`` by dotted name (see the module docstring); ``{"": model}`` when
    ``model`` holds no ComplexAdapter, NormUnet or ResUNet (a plain real CNN)."""
    networks = {}
    for name, module in model.named_modules():
        if isinstance(module, ComplexAdapter):
            networks[f"{name}.net" if name else "net"] = module.net
        elif isinstance(module, NormUnet):
            networks[f"{name}.unet" if name else "unet"] = module.unet
        elif isinstance(module, ResUNet):
            networks[name] = module
    return networks or {"": model}


def capture_network_inputs(model: nn.Module, example_inputs: tuple, networks: dict[str, nn.Module]) -> dict:
    """The positional inputs of each network's first call in ``model(*example_inputs)`` (first sample
    only, detached), under the pure-torch backend and without gradients.

    The forward stops as soon as every network has been called once.
    """
    captured: dict[str, tuple] = {}

    def hook_for(name):
        def hook(module, args):
            if name not in captured:
                captured[name] = tuple(a[:1].detach().clone() if torch.is_tensor(a) else a for a in args)
            if len(captured) == len(networks):
                raise _AllNetworksCalled
        return hook

    handles = [network.register_forward_pre_hook(hook_for(name)) for name, network in networks.items()]
    try:
        with ops.use_backend("torch"), torch.no_grad(), _eval_mode(model):
            model(*example_inputs)
    except _AllNetworksCalled:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(networks) - set(captured))
    if missing:
        raise ValueError(f"example_inputs: the model's forward never called its network(s) {missing}")
    return captured


class _Networks(nn.Module):
    """The networks side by side, so one dependency graph (and one global ranking) covers all of them."""

    def __init__(self, networks: dict[str, nn.Module]):
        super().__init__()
        self.networks = nn.ModuleList(networks.values())

    def forward(self, inputs: list[tuple]) -> list[torch.Tensor]:
        return [network(*args) for network, args in zip(self.networks, inputs)]


def _last_conv(network: nn.Module) -> nn.Module:
    """The network's output convolution: its last registered convolution (EDSR's tail, DnCNN's last
    layer, the U-Net's final 1x1 conv)."""
    convs = [m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError(f"model: network {type(network).__name__} has no convolution to prune")
    return convs[-1]


def default_ignored_layers(model: nn.Module) -> list[nn.Module]:
    """What is never pruned by default: each network's output convolution (it makes the 2 image
    channels) and the whole sensitivity network of an E2E-VarNet."""
    ignored = [_last_conv(network) for network in prunable_networks(model).values()]
    ignored += [m for m in model.modules() if isinstance(m, SensitivityModel)]
    return ignored


def _layer_names(model: nn.Module, layers) -> list[str]:
    """The dotted names in ``model`` of ``layers`` (modules of ``model`` or names), so that the same
    layers can be found in a deep copy."""
    names_by_id = {id(module): name for name, module in model.named_modules()}
    names = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in names_by_id:
                raise ValueError(f"ignored_layers: a {type(layer).__name__} that is not part of the model")
            names.append(names_by_id[id(layer)])
        elif isinstance(layer, str):
            try:
                model.get_submodule(layer)
            except AttributeError as err:
                raise ValueError(f"ignored_layers: the model has no submodule {layer!r}") from err
            names.append(layer)
        else:
            raise TypeError(f"ignored_layers: expected modules or dotted names, got {type(layer).__name__}")
    return names


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"ratio: expected a number in [0, 1), got {ratio!r}")
    return float(ratio)


def _sync_instance_norms(container: _Networks, example: list[tuple]) -> None:
    """Set ``num_features`` of the parameter-free instance norms to the channels they now receive
    (torch-pruning leaves them alone: without affine weights there is nothing for it to slice)."""
    def record(module, args):
        module.num_features = args[0].shape[1]

    handles = [m.register_forward_pre_hook(record) for m in container.modules()
               if isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.affine]
    try:
        with torch.no_grad():
            container(example)
    finally:
        for handle in handles:
            handle.remove()


def prune_structured(model: nn.Module, example_inputs: tuple, ratio: float, *, importance: str = "l1",
                     round_to: int | None = 8, ignored_layers=None, global_pruning: bool = False,
                     iterative_steps: int = 1) -> nn.Module:
    """A channel-pruned deep copy of ``model``; ``model`` itself is left untouched (it stays usable as
    the teacher for distillation).

    Args:
        model: a registry model (DEQ, MoDL, (E2E-)VarNet, ComplexAdapter(EDSR / DnCNN), USRNet) or a
            plain real CNN.
        example_inputs: tuple of positional arguments of ``model.forward`` (e.g. ``(kspace, physics)``).
        ratio: fraction of the channels of each dependency group to remove, in [0, 1); 0 returns a copy.
        importance: ``"l1"`` or ``"l2"`` group magnitude of the coupled weights.
        round_to: the kept channels of every pruned group are rounded down to a multiple of this
            (None or 1: no rounding). A group whose rounded count would be 0 (fewer kept channels
            than ``round_to``) is left whole: torch-pruning never empties a group.
        ignored_layers: modules or dotted names (of ``model``) whose channels are kept, in addition
            to :func:`default_ignored_layers`.
        global_pruning: rank the channels of all groups (all networks) together instead of per group.
        iterative_steps: reach ``ratio`` in this many equal steps, re-ranking in between.
    """
    import torch_pruning as tp

    ratio = _check_ratio(ratio)
    if importance not in IMPORTANCE_NORMS:
        raise ValueError(f"importance: expected one of {sorted(IMPORTANCE_NORMS)}, got {importance!r}")
    if round_to is not None:
        round_to = check_int("round_to", round_to, minimum=1)
        round_to = round_to if round_to > 1 else None
    iterative_steps = check_int("iterative_steps", iterative_steps, minimum=1)
    if not isinstance(example_inputs, tuple):
        raise TypeError(f"example_inputs: expected a tuple of model.forward's arguments, "
                        f"got {type(example_inputs).__name__}")
    ignored_names = _layer_names(model, ignored_layers or [])

    pruned = copy.deepcopy(model)
    if ratio == 0:
        return pruned
    ignored = default_ignored_layers(pruned) + [pruned.get_submodule(name) for name in ignored_names]
    ignored_ids = {id(m) for layer in ignored for m in layer.modules()}
    networks = {name: network for name, network in prunable_networks(pruned).items()
                if id(network) not in ignored_ids}
    if not networks:
        logger.warning("prune_structured: every network is ignored; nothing to prune")
        return pruned
    inputs = capture_network_inputs(pruned, example_inputs, networks)
    container = _Networks(networks)
    example = [inputs[name] for name in networks]
    with _eval_mode(pruned):
        with torch.no_grad():
            dense_shapes = [out.shape for out in container(example)]
        pruner = tp.pruner.MetaPruner(
            container, example_inputs=(example,), importance=tp.importance.GroupMagnitudeImportance(
                p=IMPORTANCE_NORMS[importance]), pruning_ratio=ratio, global_pruning=global_pruning,
            iterative_steps=iterative_steps, ignored_layers=ignored, round_to=round_to)
        for _ in range(iterative_steps):
            pruner.step()
        _sync_instance_norms(container, example)
        with torch.no_grad():
            shapes = [out.shape for out in container(example)]
    if shapes != dense_shapes:
        raise RuntimeError(f"prune_structured: pruning changed the networks' output shapes "
                           f"{dense_shapes} -> {shapes}; an output layer was not ignored")
    logger.info("pruned %s: %d -> %d parameters", type(model).__name__, count_params(model), count_params(pruned))
    return pruned


def count_params(model: nn.Module) -> int:
    """Number of parameters (every element of every parameter tensor)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example_inputs: tuple) -> int:
    """Multiply-accumulates of ONE application of each network of ``model`` on its input in
    ``model(*example_inputs)`` (torch-pruning's counter; convolutions, norms, activations).

    For iterative models this is the per-iteration cost of the learned part: a DEQ applies its
    denoiser once per solver iteration, MoDL once per unrolled iteration, a VarNet each cascade's
    U-Net (and the sensitivity U-Net) once per forward. The data-consistency / FFT work is not
    counted: pruning does not change it, and a DEQ's iteration count depends on the data.
    """
    import torch_pruning as tp

    networks = prunable_networks(model)
    inputs = capture_network_inputs(model, example_inputs, networks)
    total = 0
    for name, network in networks.items():
        with _eval_mode(network):
            macs, _ = tp.utils.count_ops_and_params(network, inputs[name])
        total += int(macs)
    return total
