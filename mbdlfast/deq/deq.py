"""DEQFixedPoint: an equilibrium layer z* = f(z*, *inputs) with JFB or implicit (IFT) gradients.

The forward solve runs without autograd. Gradients are re-attached by one application of f at z*:

* ``backward="jfb"`` (Jacobian-free backprop, as the published DEQ-MRI code trains): the output is
  f(z*, inputs) with z* a constant, so dL/dθ = (∂f/∂θ)ᴴ · dL/dz;
* ``backward="ift"`` (implicit function theorem): the incoming gradient v is replaced by the
  solution u of the adjoint fixed point u = J_fᴴ u + v (J_f = ∂f/∂z at z*), solved with the same
  solver on vector-Jacobian products, giving the exact gradient of the equilibrium.

Both work on complex states (PyTorch's conjugate-Wirtinger gradient convention throughout).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from mbdlfast.deq.anderson import anderson
from mbdlfast.deq.fixed_point import fixed_point
from mbdlfast.deq.reference_anderson import reference_anderson

# Every fixed-point solver by name: ours, the plain iteration, and the public DEQ code's Anderson.
SOLVERS = {"anderson": anderson, "fixed_point": fixed_point, "reference_anderson": reference_anderson}
BACKWARDS = ("jfb", "ift")


def accepted_kwargs(solver: str, kwargs: dict) -> dict:
    """The entries of ``kwargs`` that the solver ``solver`` takes (e.g. Anderson's ``m`` is not the
    plain iteration's), so one set of settings can be handed to any solver."""
    parameters = inspect.signature(SOLVERS[solver]).parameters
    return {name: value for name, value in kwargs.items() if name in parameters}


class _ImplicitGradient(torch.autograd.Function):
    """Identity in the forward; in the backward, solves u = J_fᴴ u + v for the incoming v."""

    @staticmethod
    def forward(ctx, z_out, z_in, layer):
        ctx.z_out = z_out  # kept with its graph: the backward differentiates it again
        ctx.z_in = z_in
        ctx.layer = layer
        return z_out.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        def adjoint_map(u):
            with torch.enable_grad():
                (vjp,) = torch.autograd.grad(ctx.z_out, ctx.z_in, u, retain_graph=True)
            return vjp + grad

        solve = SOLVERS[ctx.layer.backward_solver]
        u, info = solve(adjoint_map, grad, **ctx.layer.backward_kwargs)
        ctx.layer.last_backward_info = info
        # u flows on through the graph of z_out, i.e. through one f step, to the inputs and parameters
        return u, None, None


class DEQFixedPoint(nn.Module):
    """Equilibrium layer around ``f_module(z, *inputs)``; ``forward(z0, *inputs)`` returns z*.

    ``solver``: a name of :data:`SOLVERS`, called with ``solver_kwargs`` (tol, max_iter, m, ...).
    ``backward``: "jfb" or "ift"; the IFT adjoint solve uses ``backward_solver`` (default: the
    forward solver) with ``backward_kwargs``. After a call, ``last_info`` holds the forward solver's
    info and, after a backward through IFT, ``last_backward_info`` the adjoint solver's.
    Without autograd (``torch.no_grad()`` or nothing requiring grad) the solution is returned as is.
    """

    def __init__(self, f_module: nn.Module, solver: str = "anderson", backward: str = "jfb",
                 solver_kwargs: dict | None = None, backward_kwargs: dict | None = None,
                 backward_solver: str | None = None):
        super().__init__()
        if not callable(f_module):
            raise TypeError(f"f_module: expected a callable (an nn.Module), got {type(f_module).__name__}")
        for name, value in (("solver", solver), ("backward_solver", backward_solver or solver)):
            if value not in SOLVERS:
                raise ValueError(f"{name}: expected one of {sorted(SOLVERS)}, got {value!r}")
        if backward not in BACKWARDS:
            raise ValueError(f"backward: expected one of {BACKWARDS}, got {backward!r}")
        self.f_module = f_module
        self.solver = solver
        self.backward = backward
        self.backward_solver = backward_solver or solver
        self.solver_kwargs = dict(solver_kwargs or {})
        self.backward_kwargs = dict(backward_kwargs or {})
        self.last_info: dict | None = None
        self.last_backward_info: dict | None = None

    def forward(self, z0: torch.Tensor, *inputs) -> torch.Tensor:
        with torch.no_grad():
            z_star, self.last_info = SOLVERS[self.solver](lambda z: self.f_module(z, *inputs), z0,
                                                          **self.solver_kwargs)
        if not torch.is_grad_enabled():
            return z_star
        z_in = z_star.detach().requires_grad_(self.backward == "ift")
        z_out = self.f_module(z_in, *inputs)
        if not z_out.requires_grad:
            return z_star
        if self.backward == "ift":
            return _ImplicitGradient.apply(z_out, z_in, self)
        return z_out

    def extra_repr(self) -> str:
        return f"solver={self.solver!r}, backward={self.backward!r}"
