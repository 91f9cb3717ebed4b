"""Accuracy and translation invariance (the definitions: README "Metrics").

All shifts come from a generator seeded with `eval.seed`, so every operator is measured on
the same shifted images. Predictions run in large batches under `torch.inference_mode`.

Test-time draws: an operator that is random in training (fractional, stochastic) marks itself
with a `draw_seed` attribute. With `eval.draws=K > 1` a prediction averages the softmax over K
fixed draws: draw k sets every such module's `draw_seed` from (eval.seed, k, the module's
place), so the draws are the same for every image, every shift and every rerun. K = 1 keeps
each operator's single deterministic evaluation (fractional: u = 0.5; stochastic: the expectation).
`eval.draws=auto` (the default) takes each operator's `default_draws`, chosen by measurement
(BENCHMARKS.md). A user's operator opts in by defining
`draw_seed = None` (and optionally `default_draws`) and honouring `draw_seed` in eval mode.
"""

from __future__ import annotations

import contextlib

import torch

from poolbench.data.transforms import shift_images
from poolbench.results import ADDED_SINCE

AXIS_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # down, up, right, left


def drawing_modules(model) -> list:
    """The modules whose evaluation can take a seeded draw (they define `draw_seed`)."""
    return [module for module in model.modules() if hasattr(module, "draw_seed")]


@contextlib.contextmanager
def seeded_draw(modules: list, seed: int, draw: int):
    """Draw number `draw` in every module of `modules`, each with its own seed."""
    for place, module in enumerate(modules):
        module.draw_seed = (seed * 1_000 + draw) * 1_000 + place
    try:
        yield
    finally:
        for module in modules:
            module.draw_seed = None


def effective_draws(model, draws) -> int:
    """K for this model: `eval.draws`, or with `auto` its operators' own `default_draws`; 1 for a
    model without draws (a deterministic model needs one pass)."""
    modules = drawing_modules(model)
    if not modules:
        return 1
    if str(draws) == "auto":
        return max(int(getattr(module, "default_draws", 1)) for module in modules)
    return int(draws)


@torch.inference_mode()
def predict(model, images: torch.Tensor, normalize, batch_size: int,
            autocast: contextlib.AbstractContextManager | None = None,
            offsets: tuple[torch.Tensor, torch.Tensor] | None = None, mode: str = "circular",
            draws: int = 1, draw_seed: int = 0, flip: bool = False) -> torch.Tensor:
    """Top-1 class of every image (uint8 (N, C, H, W)) in eval mode.

    With `offsets` = (dy, dx), image i is first shifted by (dy[i], dx[i]) (see shift_images).
    With `draws` = K > 1, the class of the softmax averaged over K seeded draws (module docstring).
    With `flip` (eval.tta_flip), test-time flip: the softmax averaged over the image and its mirror
    image (after the shift), in every draw.
    """
    was_training = model.training
    model.eval()
    modules = drawing_modules(model) if draws > 1 else []
    draws = draws if modules else 1  # a model with nothing to draw gives the same pass K times
    views = (lambda x: x, lambda x: x.flip(3)) if flip else (lambda x: x,)
    preds = []
    with autocast or contextlib.nullcontext():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size]
            if offsets is not None:
                dy, dx = (o[start:start + batch_size] for o in offsets)
                chunk = shift_images(chunk, dy, dx, mode)
            inputs = normalize(chunk)
            if not modules and not flip:
                preds.append(model(inputs).argmax(1))
                continue
            probabilities = 0
            for draw in range(draws):
                with seeded_draw(modules, draw_seed, draw) if modules else contextlib.nullcontext():
                    for view in views:
                        probabilities = probabilities + model(view(inputs)).float().softmax(1)
            preds.append(probabilities.argmax(1))
    model.train(was_training)
    return torch.cat(preds)


def invariance(model, images: torch.Tensor, labels: torch.Tensor, normalize, eval_cfg,
               autocast: contextlib.AbstractContextManager | None = None,
               base: torch.Tensor | None = None) -> dict:
    """Test accuracy plus consistency, shift_accuracy[d] and flip_rate_1px.

    `base`: the model's unshifted predictions when already made (training's last test pass, a
    single pass: unused when eval.draws averages several). One function because the three
    metrics share one table of predictions per offset (`known`), which is what lets the
    consistency draws reuse the shift-accuracy passes.
    """
    max_shift, mode, batch = int(eval_cfg.max_shift), str(eval_cfg.shift_mode), int(eval_cfg.batch_size)
    n = images.shape[0]
    protocol = prediction_protocol(model, eval_cfg)
    draws = protocol["draws"]
    if draws > 1:
        base = None

    def predict_shifted(dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        return predict(model, images, normalize, batch, autocast, offsets=(dy, dx), mode=mode, **protocol)

    # Predictions at each (dy, dx) offset, filled as they are computed: the consistency draws
    # below reuse them (an eval-mode model's prediction for an image at an offset is fixed), which
    # saves about a third of their passes at the default max_shift=3, shift_pairs=5.
    side = 2 * max_shift + 1
    known = torch.full((side * side, n), -1, dtype=torch.long)

    def remember(dy: int, dx: int, predictions: torch.Tensor) -> torch.Tensor:
        known[(dy + max_shift) * side + dx + max_shift] = predictions.cpu()
        return predictions

    if base is None:
        base = predict(model, images, normalize, batch, autocast, **protocol)
    base = remember(0, 0, base)
    shift_accuracy = {"0": _share(base == labels)}
    flip_rate = 0.0
    for d in range(1, max_shift + 1):
        accs = []
        for sy, sx in AXIS_DIRECTIONS:
            dy = torch.full((n,), sy * d, dtype=torch.long)
            dx = torch.full((n,), sx * d, dtype=torch.long)
            shifted = remember(sy * d, sx * d, predict_shifted(dy, dx))
            accs.append(_share(shifted == labels))
            if d == 1:
                flip_rate += _share(shifted != base) / len(AXIS_DIRECTIONS)
        shift_accuracy[str(d)] = sum(accs) / len(accs)

    generator = torch.Generator().manual_seed(int(eval_cfg.seed))
    pairs = int(eval_cfg.shift_pairs)
    # (pair, which of the two, dy/dx, image): drawn in the same order as one pair at a time
    offsets = torch.stack([torch.randint(-max_shift, max_shift + 1, (2, 2, n), generator=generator)
                           for _ in range(pairs)]) if pairs else torch.zeros((0, 2, 2, n), dtype=torch.long)
    codes = (offsets[:, :, 0] + max_shift) * side + offsets[:, :, 1] + max_shift  # (pairs, 2, n)
    for code in codes.unique().tolist():
        wanted = (codes == code).any(0).any(0) & (known[code] < 0)
        if wanted.any():
            index = wanted.nonzero().squeeze(1)
            dy, dx = (torch.full((len(index),), k - max_shift) for k in divmod(code, side))
            known[code, index] = predict(model, images[index.to(images.device)], normalize, batch, autocast,
                                         offsets=(dy, dx), mode=mode, **protocol).cpu()
    image_index = torch.arange(n)
    agreements = [_share(known[codes[p, 0], image_index] == known[codes[p, 1], image_index])
                  for p in range(pairs)]

    return {
        "accuracy": shift_accuracy["0"],
        "invariance": {
            "consistency": sum(agreements) / len(agreements) if agreements else float("nan"),
            "max_shift": max_shift,
            "shift_mode": mode,
            "shift_pairs": int(eval_cfg.shift_pairs),
            "draws": draws,  # predictions averaged over this many seeded draws (1: a single deterministic pass)
            "tta_flip": protocol["flip"],  # and over each image and its mirror image
            "shift_accuracy": shift_accuracy,
            "flip_rate_1px": flip_rate if max_shift >= 1 else float("nan"),
        },
    }


def uses_test_time_flip(eval_cfg) -> bool:
    """eval.tta_flip; false for a run configured before the key existed."""
    return bool(eval_cfg.get("tta_flip", ADDED_SINCE["eval.tta_flip"]))


def prediction_protocol(model, eval_cfg) -> dict:
    """predict()'s keyword arguments for every test prediction under `eval_cfg`: draws and test-time
    flip. (Training's per-epoch test pass makes one draw with the same flip setting.)"""
    draws = eval_cfg.get("draws", ADDED_SINCE["eval.draws"])
    return {"draws": effective_draws(model, draws), "draw_seed": int(eval_cfg.seed),
            "flip": uses_test_time_flip(eval_cfg)}


def _share(mask: torch.Tensor) -> float:
    return mask.sum().item() / max(1, mask.numel())
