import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from poolbench.data.transforms import Normalizer
from poolbench.evaluate import invariance, predict

EVAL = OmegaConf.create({"max_shift": 2, "shift_pairs": 3, "shift_mode": "circular", "seed": 0, "batch_size": 7})
NORM = Normalizer([0.0], [1.0], torch.device("cpu"), channels_last=False)


class TopRowBright(nn.Module):
    """Predicts 1 when the top-left pixel is lit, else 0: maximally shift-sensitive."""

    def forward(self, x):
        lit = (x[:, 0, 0, 0] > 0.5).long()
        return nn.functional.one_hot(lit, 2).float()


class Constant(nn.Module):
    def forward(self, x):
        return torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)


def images(n=20):
    x = torch.zeros(n, 1, 6, 6, dtype=torch.uint8)
    x[:, :, 0, 0] = 255
    return x


def test_a_constant_model_is_perfectly_invariant():
    x = images()
    result = invariance(Constant(), x, torch.ones(len(x), dtype=torch.long), NORM, EVAL)
    inv = result["invariance"]
    assert result["accuracy"] == 1.0 and inv["consistency"] == 1.0 and inv["flip_rate_1px"] == 0.0
    assert inv["shift_accuracy"] == {"0": 1.0, "1": 1.0, "2": 1.0}


def test_a_position_reading_model_flips_under_every_shift():
    x = images()
    result = invariance(TopRowBright(), x, torch.ones(len(x), dtype=torch.long), NORM, EVAL)
    inv = result["invariance"]
    assert result["accuracy"] == 1.0
    assert inv["flip_rate_1px"] == 1.0 and inv["shift_accuracy"]["1"] == 0.0
    assert 0.0 < inv["consistency"] < 1.0  # pairs agree only when both shifts move the pixel away


def test_predict_is_batch_size_independent():
    x = torch.randint(0, 255, (23, 1, 6, 6), dtype=torch.uint8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 4))
    assert torch.equal(predict(model, x, NORM, 5), predict(model, x, NORM, 23))


def reference_consistency(model, x, eval_cfg):
    """The README's definition computed the plain way: two full passes per shift pair."""
    generator = torch.Generator().manual_seed(int(eval_cfg.seed))
    s, n, agreements = int(eval_cfg.max_shift), len(x), []
    flip = bool(eval_cfg.get("tta_flip", False))
    for _ in range(int(eval_cfg.shift_pairs)):
        o = torch.randint(-s, s + 1, (2, 2, n), generator=generator)
        first = predict(model, x, NORM, 5, offsets=(o[0, 0], o[0, 1]), mode=eval_cfg.shift_mode, flip=flip)
        second = predict(model, x, NORM, 5, offsets=(o[1, 0], o[1, 1]), mode=eval_cfg.shift_mode, flip=flip)
        agreements.append((first == second).sum().item() / n)
    return sum(agreements) / len(agreements)


@pytest.mark.parametrize("flip", [False, True])
def test_consistency_reusing_predictions_equals_the_plain_definition(flip):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))  # shift-sensitive, deterministic
    x = torch.randint(0, 255, (200, 1, 6, 6), dtype=torch.uint8)
    for mode in ("circular", "translate"):
        cfg = OmegaConf.merge(EVAL, {"shift_pairs": 4, "shift_mode": mode, "seed": 3, "tta_flip": flip})
        result = invariance(model, x, torch.zeros(200, dtype=torch.long), NORM, cfg)["invariance"]
        expected = reference_consistency(model, x, cfg)
        assert 0.2 < expected < 0.95  # the check can tell a wrong pairing from a right one
        assert result["consistency"] == pytest.approx(expected, abs=1e-12)


def test_given_unshifted_predictions_are_used_as_they_are():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    x = torch.randint(0, 255, (50, 1, 6, 6), dtype=torch.uint8)
    labels = torch.zeros(50, dtype=torch.long)
    computed = invariance(model, x, labels, NORM, EVAL)
    assert invariance(model, x, labels, NORM, EVAL, base=predict(model, x, NORM, 7)) == computed
    # they really are the ones used: all-wrong predictions give accuracy 0 and move flip rate
    reused = invariance(model, x, labels, NORM, EVAL, base=torch.ones(50, dtype=torch.long) * 2)
    assert reused["accuracy"] == 0.0
    assert reused["invariance"]["flip_rate_1px"] != computed["invariance"]["flip_rate_1px"]


# ---------------------------------------------------------------- test-time draws (eval.draws)

def drawing_model(pool: str) -> nn.Module:
    from poolbench.pools.basic import FractionalMaxPool
    from poolbench.pools.weighted import StochasticPool

    torch.manual_seed(0)
    slot = FractionalMaxPool(4) if pool == "fractional" else StochasticPool(4)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), slot, nn.Flatten(),
                         nn.LazyLinear(3)).eval()


def random_images(n=24, size=8):
    return torch.randint(0, 256, (n, 1, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.mark.parametrize("pool", ["fractional", "stochastic"])
def test_draws_are_fixed_per_draw_and_the_same_for_every_image(pool):
    model, x = drawing_model(pool), random_images()
    model(NORM(x[:2]))  # materialize the lazy layer
    one = predict(model, x, NORM, batch_size=24)
    again = predict(model, x, NORM, batch_size=5, draws=6, draw_seed=3)
    # the same draws whatever the batch (each image is judged on its own) and on every call
    assert torch.equal(again, predict(model, x, NORM, batch_size=24, draws=6, draw_seed=3))
    assert torch.equal(predict(model, x[7:8], NORM, batch_size=1, draws=6, draw_seed=3), again[7:8])
    # K = 1 is the single deterministic pass; draws with another seed are other draws
    assert torch.equal(one, predict(model, x, NORM, batch_size=24, draws=1, draw_seed=3))
    slot = model[2]
    assert slot.draw_seed is None  # left as it was after the draws
    with torch.no_grad():
        features = model[1](model[0](NORM(x)))
        slot.draw_seed = 11
        first = slot(features)
        slot.draw_seed = 12
        second = slot(features)
        slot.draw_seed = None
        fixed = slot(features)
    assert not torch.equal(first, second) and not torch.equal(first, fixed)


def softmax_over_draws(model, x, draws: int, draw_seed: int, flip: bool = False) -> torch.Tensor:
    """The plain formula: the softmax summed over the seeded draws (and each image's mirror image)."""
    from poolbench.evaluate import drawing_modules, seeded_draw

    with torch.no_grad():
        total = 0
        for draw in range(draws):
            with seeded_draw(drawing_modules(model), draw_seed, draw):
                total = total + model(NORM(x)).softmax(1)
                if flip:
                    total = total + model(NORM(x).flip(3)).softmax(1)
    return total


def test_predictions_average_the_softmax_over_the_draws():
    model, x = drawing_model("fractional"), random_images(6)
    model(NORM(x[:2]))
    total = softmax_over_draws(model, x, draws=3, draw_seed=5)
    assert torch.equal(predict(model, x, NORM, batch_size=6, draws=3, draw_seed=5), total.argmax(1))


def test_invariance_records_the_draws_it_used():
    x = random_images(12)
    labels = torch.zeros(12, dtype=torch.long)
    model = drawing_model("fractional")
    model(NORM(x[:2]))
    eval_cfg = OmegaConf.merge(EVAL, {"draws": 4})
    assert invariance(model, x, labels, NORM, eval_cfg)["invariance"]["draws"] == 4
    # a model with nothing to draw makes one pass whatever eval.draws says
    assert invariance(Constant(), x, labels, NORM, eval_cfg)["invariance"]["draws"] == 1
    # a given single-pass base is not reused when draws average several passes
    wrong = torch.full((12,), 2, dtype=torch.long)
    result = invariance(model, x, labels, NORM, eval_cfg, base=wrong)
    assert result["accuracy"] == (predict(model, x, NORM, 7, draws=4, draw_seed=0) == labels).float().mean().item()


def test_auto_draws_take_each_operators_own_default():
    from poolbench.evaluate import effective_draws
    from poolbench.pools.basic import FractionalMaxPool
    from poolbench.pools.weighted import StochasticPool

    assert effective_draws(drawing_model("fractional"), "auto") == FractionalMaxPool.default_draws > 1
    assert effective_draws(drawing_model("stochastic"), "auto") == StochasticPool.default_draws == 1
    assert effective_draws(drawing_model("stochastic"), 3) == 3 and effective_draws(Constant(), "auto") == 1


class LeftCornerLit(nn.Module):
    """Class 1 (weakly) when the top-left pixel is lit, else class 0 (strongly): not mirror-symmetric."""

    def forward(self, x):
        lit = (x[:, 0, 0, 0] > 0.5).float()
        return torch.stack([3.0 * (1 - lit), lit], dim=1)


def test_test_time_flip_averages_the_softmax_of_the_image_and_its_mirror():
    x = images(4)  # top-left pixel lit: class 1 (softmax 0.73); mirrored, class 0 (softmax 0.95)
    assert predict(LeftCornerLit(), x, NORM, batch_size=3).tolist() == [1, 1, 1, 1]
    assert predict(LeftCornerLit(), x, NORM, batch_size=3, flip=True).tolist() == [0, 0, 0, 0]
    drawing = LeftCornerLit()
    drawing.draw_seed = None  # a module that takes draws: the flip holds in the draws' path too
    assert predict(drawing, x, NORM, batch_size=3, draws=3).tolist() == [1, 1, 1, 1]
    assert predict(drawing, x, NORM, batch_size=3, draws=3, flip=True).tolist() == [0, 0, 0, 0]
    # against the plain formula, on a real network, with draws too
    model, x = drawing_model("fractional"), random_images(6)
    model(NORM(x[:2]))
    total = softmax_over_draws(model, x, draws=2, draw_seed=5, flip=True)
    assert torch.equal(predict(model, x, NORM, batch_size=4, draws=2, draw_seed=5, flip=True), total.argmax(1))


def test_invariance_applies_and_records_test_time_flip():
    x, labels = images(10), torch.zeros(10, dtype=torch.long)
    plain = invariance(LeftCornerLit(), x, labels, NORM, EVAL)
    flipped = invariance(LeftCornerLit(), x, labels, NORM, OmegaConf.merge(EVAL, {"tta_flip": True}))
    assert plain["accuracy"] == 0.0 and flipped["accuracy"] == 1.0
    assert flipped["invariance"]["tta_flip"] is True and plain["invariance"]["tta_flip"] is False
    # the shifted passes are flip-averaged too: the same shifts predicted the plain way with flip=True
    cfg = OmegaConf.merge(EVAL, {"tta_flip": True})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    x, labels = torch.randint(0, 255, (50, 1, 6, 6), dtype=torch.uint8), torch.zeros(50, dtype=torch.long)
    result = invariance(model, x, labels, NORM, cfg)["invariance"]
    n = len(x)
    for d in (1, 2):
        accs = []
        for sy, sx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            offsets = (torch.full((n,), sy * d), torch.full((n,), sx * d))
            accs.append((predict(model, x, NORM, 5, offsets=offsets, flip=True) == labels).sum().item() / n)
        assert result["shift_accuracy"][str(d)] == pytest.approx(sum(accs) / 4, abs=1e-12)
