"""Deep equilibrium (DEQ) tools: fixed-point solvers and the DEQ module wrapper.

* :func:`fixed_point` — plain iteration; :func:`anderson` — Anderson acceleration with a conjugated
  (complex-correct), incrementally updated Gram matrix, per-sample freezing, best-iterate return and
  device-side convergence checks;
* :data:`SOLVERS` — every solver by name (with the public DEQ code's Anderson, ``reference_anderson``);
* :class:`DEQFixedPoint` — solves z* = f(z*, inputs) without gradients and re-attaches gradients by
  one Jacobian-free step (JFB) or by the implicit-function theorem (IFT);
* :func:`jacobian_frobenius` — the Hutchinson estimate of ‖J_f‖²_F / d that training adds to keep f
  contractive (Jacobian regularisation).
"""
from mbdlfast.deq.anderson import anderson, mixing_weights
from mbdlfast.deq.deq import SOLVERS, DEQFixedPoint, accepted_kwargs
from mbdlfast.deq.fixed_point import fixed_point
from mbdlfast.deq.jacobian import jacobian_frobenius

__all__ = ["SOLVERS", "DEQFixedPoint", "accepted_kwargs", "anderson", "fixed_point", "jacobian_frobenius",
           "mixing_weights"]
