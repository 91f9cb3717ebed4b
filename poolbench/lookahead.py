"""Lookahead weight averaging (train.lookahead): a slow copy of the weights that training returns to.

Every EVERY steps the slow copy moves toward the trained weights by (1 - decay), and the model is
set back to it. The decay ramps up with the cube of training's progress, from 0 to
`train.lookahead` at the last step, so the early, fast learning is left alone and the last steps
are averaged over many: the schedule of Keller Jordan's airbench, whose peak is 0.95**5 (about
0.77). The last step always updates (here with the scheduled decay, where airbench resets to the
slow weights), so training ends on the slow weights. BatchNorm's running statistics are averaged
with the weights; its integer batch counter is not.
"""

from __future__ import annotations

import torch

EVERY = 5  # steps between updates


class Lookahead:
    def __init__(self, model: torch.nn.Module, peak_decay: float, total_steps: int):
        self.peak_decay, self.total_steps = float(peak_decay), int(total_steps)
        # floating-point weights and buffers, in state_dict order (num_batches_tracked is an integer)
        self.live = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.live]

    def after_step(self, steps_done: int) -> None:
        """Call after each optimizer step with the number of steps done so far in the whole run."""
        if steps_done % EVERY and steps_done != self.total_steps:
            return
        decay = self.peak_decay * (steps_done / self.total_steps) ** 3
        with torch.no_grad():
            torch._foreach_lerp_(self.slow, self.live, 1.0 - decay)
            torch._foreach_copy_(self.live, self.slow)

    def state_dict(self) -> list[torch.Tensor]:
        return list(self.slow)  # saved at once (a checkpoint), as the model's own state_dict is

    def load_state_dict(self, slow: list[torch.Tensor]) -> None:
        if len(slow) != len(self.slow):
            raise ValueError("the checkpoint's lookahead weights do not match the model")
        with torch.no_grad():
            torch._foreach_copy_(self.slow, [t.to(s.device) for t, s in zip(slow, self.slow)])
