"""Pair blocks with an eager form and a ``torch.compile`` form.

The (query, key) pair tensors of Site-Net hold tens of thousands of rows of
``width`` numbers per batch, and most of the time of a training step goes to
element-wise work on them (mish, LayerNorm, sums of gathered projections), one
memory pass per eager kernel. ``torch.compile`` (inductor: C++ with OpenMP on the
CPU, Triton on a GPU) fuses those passes, forward and backward. A
``PairBlock`` is a function of tensors only, so one compilation (sizes of
rows and keys symbolic, widths constant) serves every batch and every model
of the process that has the same widths.

Compiling needs a working C++ compiler (or Triton on a GPU) and takes about a
minute the first time a block runs with and without gradients; it pays on long
runs. Where compiling is impossible, ``compile_available`` says so once with
a warning, and the blocks run in their eager form: the same function, written
for the eager kernels (``dim_sklearn.nn.activations.mish``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch

__all__ = ["AUTO_COMPILE_PASSES", "PairBlock", "compile_available", "resolve_compile", "set_compiled"]

CompileOption = bool | Literal["auto"]

AUTO_COMPILE_PASSES = 50_000
"""With ``compile="auto"``, a run compiles when it will pass at least this many crystals through the network.

About ten minutes of eager work on two CPU cores, against about a minute of compiling.
"""


RECOMPILE_LIMIT = 64
"""Graphs a ``PairBlock`` may compile (torch's own default is 8 per function)."""


@functools.cache
def compile_available(device_type: str = "cpu") -> bool:
    """Whether ``torch.compile`` works here for tensors on ``device_type``.

    A small function is compiled and run forward and backward once; where that
    fails (no C++ compiler, no Triton for the GPU, ...), warns once per device
    type and returns False.
    """
    try:
        function = torch.compile(lambda x: (x * torch.exp(x)).sum(), dynamic=True)
        x = torch.randn(3, 2, device=device_type, requires_grad=True)
        function(x).backward()
    except Exception as error:  # any failure of the compiler stack means: run eagerly
        warnings.warn(
            f"torch.compile is not usable here ({type(error).__name__}: {error}); the pair blocks run eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def resolve_compile(option: CompileOption, crystal_passes: int, device: torch.device | str = "cpu") -> bool:
    """Whether a run that passes ``crystal_passes`` crystals through the network on ``device`` compiles.

    ``True`` compiles where ``compile_available``; ``"auto"`` only on runs of at
    least ``AUTO_COMPILE_PASSES`` crystals; ``False`` never.
    """
    if option == "auto":
        option = crystal_passes >= AUTO_COMPILE_PASSES
    return bool(option) and compile_available(torch.device(device).type)


class PairBlock:
    """A pair-level function in two forms: ``eager`` and ``compilable`` (plain tensor operations).

    Calling it runs the compiled form of ``compilable`` when ``compiled`` is true
    (compiled on first use), ``eager`` otherwise. Both compute the same
    function; the compiled one agrees to float32 rounding.

    Parameters
    ----------
    eager, compilable : callable
        The two forms, taking the same positional arguments.
    dynamic_dims : tuple of tuples of int
        For each leading positional argument, the dimensions whose size changes
        from batch to batch (rows, keys); one compilation serves every size of
        those. Every other size (the widths, the parameters) is compiled in as a
        constant, which lets the compiler unroll and vectorise the reductions
        over the width: on the CPU the block without gradients runs about 1.6
        times faster than with every size symbolic.
    """

    def __init__(
        self,
        eager: Callable[..., torch.Tensor],
        compilable: Callable[..., torch.Tensor],
        dynamic_dims: tuple[tuple[int, ...], ...],
    ):
        self.eager = eager
        self.compilable = compilable
        self.dynamic_dims = dynamic_dims
        self._compiled: Callable[..., torch.Tensor] | None = None

    def __call__(self, *args: Any, compiled: bool = False) -> torch.Tensor:
        if not compiled:
            return self.eager(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.compilable, dynamic=False)
        for tensor, dims in zip(args, self.dynamic_dims):
            for dim in dims:
                torch._dynamo.maybe_mark_dynamic(tensor, dim)
        # Grad mode, which inputs need gradients and coinciding sizes each give a graph of their own;
        # torch's default limit of 8 per function could send a long run back to eager code half-way.
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return self._compiled(*args)


def set_compiled(module: torch.nn.Module, compiled: bool) -> torch.nn.Module:
    """Switch the pair blocks of every submodule of ``module`` that has them to their compiled (or eager) form.

    The switch is a plain attribute (``compiled_pairs``): it survives pickling and
    ``copy.deepcopy`` and does not enter ``state_dict``. Returns ``module``.
    """
    for submodule in module.modules():
        if hasattr(submodule, "compiled_pairs"):
            setattr(submodule, "compiled_pairs", compiled)  # noqa: B010 (nn.Module's typed __setattr__)
    return module
