"""torch.compile over the public SENSE ops: whole-graph capture (no graph breaks) with the cpp and torch
backends, results and gradients equal to eager; each op is one node of the graph (``mbdlfast::<op>``)."""
import pytest
import torch

import mbdlfast.ops as ops
from comparisons import relative_error
from mbdlfast.ops import dispatch, reference

MASK = torch.tensor([True, False, True, True, False, True, False, False, True])
COLUMNS = torch.nonzero(MASK).flatten()
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(
    dispatch.backend_unavailable_reason(name, torch.device("cpu")) is not None, reason=f"{name} unavailable"))
    for name in ("cpp", "torch")]


def all_ops(x, maps, AHy):
    """Every public SENSE op once, full and compact k-space."""
    k = ops.sense_forward(x, maps, MASK)
    kc = ops.sense_forward_compact(x, maps, COLUMNS)
    return (ops.sense_normal(x, maps, MASK), ops.dc_gradient_step(x, maps, MASK, AHy, 0.3), k,
            ops.sense_adjoint(k, maps, MASK), kc, ops.sense_adjoint_compact(kc, maps, COLUMNS))


def problem(batch=2, coils=3, height=7, width=9):
    torch.manual_seed(0)
    x = torch.randn(batch, height, width, dtype=torch.complex64)
    maps = torch.randn(batch, coils, height, width, dtype=torch.complex64)
    return x, maps, torch.randn_like(x)


class GraphRecorder:
    """A torch.compile backend that runs the captured graph eagerly and keeps its code."""

    def __init__(self):
        self.graphs = []

    def __call__(self, graph_module, example_inputs):
        self.graphs.append(graph_module.code)
        return graph_module.forward


@pytest.mark.parametrize("backend", BACKENDS)
def test_fullgraph_compile_matches_eager(backend):
    x, maps, AHy = problem()
    recorder = GraphRecorder()
    torch._dynamo.reset()
    with ops.use_backend(backend):
        expected = all_ops(x, maps, AHy)
        results = torch.compile(all_ops, backend=recorder, fullgraph=True)(x, maps, AHy)
    assert len(recorder.graphs) == 1
    assert recorder.graphs[0].count("torch.ops.mbdlfast.") == 6  # the public ops, opaque to the compiler
    for result, eager in zip(results, expected):
        assert result.shape == eager.shape
        torch.testing.assert_close(result, eager, rtol=1e-6, atol=1e-6)
    x128, maps128 = x.to(torch.complex128), maps.to(torch.complex128)
    assert relative_error(results[0], reference.sense_normal(x128, maps128, MASK)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_aot_eager_gradients_match_eager(backend):
    """AOTAutograd traces the registered backward formulas (image and maps) through the fake kernels."""
    x, maps, AHy = problem(batch=1)

    def loss(x, maps):
        k = ops.sense_forward(x, maps, MASK)
        kc = ops.sense_forward_compact(x, maps, COLUMNS)
        image = ops.dc_gradient_step(x, maps, MASK, AHy, 0.3) + ops.sense_adjoint_compact(kc, maps, COLUMNS)
        return image.abs().square().sum() + ops.sense_adjoint(k * 1j, maps, MASK).real.sum()

    grads = []
    torch._dynamo.reset()
    with ops.use_backend(backend):
        for fn in (loss, torch.compile(loss, backend="aot_eager", fullgraph=True)):
            inputs = (x.clone().requires_grad_(), maps.clone().requires_grad_())
            fn(*inputs).backward()
            grads.append([t.grad for t in inputs])
    for compiled, eager in zip(grads[1], grads[0]):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(dispatch.backend_unavailable_reason("cpp", torch.device("cpu")) is not None, reason="cpp unavailable")
def test_inductor_compiles_around_the_extension_ops():
    x, maps, AHy = problem()

    def step(x, maps, AHy):
        return 2 * ops.dc_gradient_step(x, maps, MASK, AHy, 0.3) - ops.sense_normal(x, maps, MASK)

    torch._dynamo.reset()
    with ops.use_backend("cpp"):
        expected = step(x, maps, AHy)
        result = torch.compile(step, fullgraph=True)(x, maps, AHy)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


def test_changing_the_backend_recompiles():
    """The forced backend is guarded on: a compiled function follows use_backend like eager code."""
    x, maps, _ = problem()
    recorder = GraphRecorder()
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, s: ops.sense_normal(a, s, MASK), backend=recorder, fullgraph=True)
    with ops.use_backend("torch"):
        compiled(x, maps)
    with ops.use_backend("naive"):
        compiled(x, maps)
    # The backend is an argument of the op: each graph names its own.
    assert len(recorder.graphs) == 2 and "'torch'" in recorder.graphs[0] and "'naive'" in recorder.graphs[1]
