"""A Triton launch as data: the kernel, its grid, arguments and compile-time settings.

The launchers build one per call and run it; :mod:`mbdlfast.gpu_report` builds the same one from
meta tensors and compiles it ahead of time, so the report shows the configuration that would run.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class TritonLaunch(NamedTuple):
    kernel: Any  # a triton.JITFunction
    grid: tuple[int, ...]
    args: tuple
    meta: dict[str, Any]  # constexprs plus num_warps / num_stages

    def run(self, wrap=None) -> None:
        """Launch; ``wrap`` (``torch.library.wrap_triton`` inside a triton_op) wraps the kernel first."""
        kernel = self.kernel if wrap is None else wrap(self.kernel)
        kernel[self.grid](*self.args, **self.meta)
