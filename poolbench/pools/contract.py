"""The operator contract, checked on a user's own operator before any training starts.

Every operator fills the same slot: input (N, C, H, W), output (N, C, H', W') with
1 <= H' <= H; a gradient reaches the input; evaluation is deterministic; a channels_last input
gives the same result; and an operator that declares `commutes_with_relu` (the backbones then
run it before its ReLU) gives relu(op(x)) = op(relu(x)). Built-in operators are held to the
same checks by tests/test_pools.py; an operator given by `pool._target_` is checked here, and a
failure names the part that failed.
"""

from __future__ import annotations

import torch
from torch import nn

from poolbench.errors import UsageError

PROBE_SIZE = 8  # small enough to cost milliseconds, even enough for every 2x2 rule


def check_operator(make, channels: int, where: str, size: int = PROBE_SIZE) -> None:
    """Build the operator with `make(channels)` and hold it to the contract; UsageError on a breach.

    `where` names the operator in messages (e.g. "pool._target_=myops.MedianPool").
    """
    def fail(part: str, detail: str) -> None:
        raise UsageError(f"{where} breaks the operator contract ({part}): {detail}.")

    torch.manual_seed(0)
    try:
        module = make(channels)
    except UsageError:
        raise
    except Exception as err:  # the user's own code: keep its message, say where it came from
        fail("builds from channels and options", f"building it raised {type(err).__name__}: {err}")
    if not isinstance(module, nn.Module):
        fail("returns a module", f"it returned {type(module).__name__}, not a torch.nn.Module")
    x = torch.randn(2, channels, size, size, requires_grad=True)
    try:
        out = module.train()(x)
    except Exception as err:
        fail("runs on (N, C, H, W)", f"calling it on a {tuple(x.shape)} input raised {type(err).__name__}: {err}")
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        fail("output size", f"it must return a 4-d tensor, got {getattr(out, 'shape', type(out).__name__)}")
    if tuple(out.shape[:2]) != (2, channels) or not (1 <= out.shape[-2] <= size and 1 <= out.shape[-1] <= size):
        fail("output size", f"for input {tuple(x.shape)} it returned {tuple(out.shape)}; "
                            f"expected (2, {channels}, H', W') with 1 <= H', W' <= {size}")
    if not out.requires_grad:
        fail("gradient reaches the input", "its output does not depend differentiably on its input")
    out.float().square().sum().backward()
    if x.grad is None or not torch.isfinite(x.grad).all() or x.grad.abs().sum() == 0:
        fail("gradient reaches the input", "the input's gradient is missing, zero or not finite")
    module.eval()
    probe = torch.randn(2, channels, size, size)
    with torch.no_grad():
        first, second = module(probe), module(probe)
        if not torch.equal(first, second):
            fail("deterministic in eval mode", "two eval-mode calls on the same input differ")
        last = module(probe.contiguous(memory_format=torch.channels_last))
    if last.shape != first.shape or not torch.allclose(first, last, atol=1e-5, rtol=1e-4):
        fail("channels_last", "a channels_last input gives a different result")
    if getattr(module, "commutes_with_relu", False):
        with torch.no_grad():
            pooled_first = torch.relu(module(probe))
            relu_first = module(torch.relu(probe))
        if not torch.allclose(pooled_first, relu_first, atol=1e-5, rtol=1e-4):
            fail("commutes_with_relu", "relu(op(x)) differs from op(relu(x)): remove the attribute")
