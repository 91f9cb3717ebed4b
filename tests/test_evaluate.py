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
    for _ in range(int(eval_cfg.shift_pairs)):
        o = torch.randint(-s, s + 1, (2, 2, n), generator=generator)
        first = predict(model, x, NORM, 5, offsets=(o[0, 0], o[0, 1]), mode=eval_cfg.shift_mode)
        second = predict(model, x, NORM, 5, offsets=(o[1, 0], o[1, 1]), mode=eval_cfg.shift_mode)
        agreements.append((first == second).sum().item() / n)
    return sum(agreements) / len(agreements)


def test_consistency_reusing_predictions_equals_the_plain_definition():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))  # shift-sensitive, deterministic
    x = torch.randint(0, 255, (200, 1, 6, 6), dtype=torch.uint8)
    for mode in ("circular", "translate"):
        cfg = OmegaConf.merge(EVAL, {"shift_pairs": 4, "shift_mode": mode, "seed": 3})
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
