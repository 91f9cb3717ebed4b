"""The proof that the operator and the metrics are both right: with circularly padded
convolutions (model.padding=circular), APS in every slot (pool=aps), a global-average-pool
readout and an image size divisible by 2^stages, a network is exactly invariant to circular
shifts, so a run through the ordinary path must report consistency 1, flip rate 0 and the same
accuracy at every shift. Max pooling under the same setup must not, or the check could not fail.
"""

import pytest
from helpers import read_metrics

from poolbench.config import compose_config
from poolbench.experiment import run_experiment

# Two stages on 16x16 images (16 = 4 x 2^2): every APS meets an even size. Just enough training
# (32 steps, about 0.5 s) for 35-70% accuracy on 10 classes: a network that predicts one class
# for every image would be shift-invariant whatever its operator. The CPU keeps the arithmetic
# of a pixel the same wherever it sits (a GPU's tiled convolutions need not); shifts are circular.
EXACT = ["data=shapes", "data.image_size=16", "data.train_size=512", "data.test_size=96", "train.epochs=2",
         "train.batch_size=32", "model.channels=[8,16]", "model.readout=gap", "model.padding=circular",
         "eval.shift_mode=circular", "eval.max_shift=2", "eval.shift_pairs=2", "eval.throughput.warmup=1",
         "eval.throughput.iters=1", "eval.throughput.batch_size=8", "threads=1", "device=cpu"]
CHANCE = 0.1


@pytest.mark.parametrize("pool", ["aps", "max"])
def test_aps_with_circular_padding_and_gap_is_exactly_shift_invariant_and_max_is_not(pool, tmp_path):
    overrides = [*EXACT, f"pool={pool}"]
    run_experiment(compose_config(overrides), tmp_path, overrides, show_progress=False)
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "complete"
    invariance, accuracy = metrics["invariance"], metrics["accuracy"]["test"]
    assert invariance["shift_mode"] == "circular" and set(invariance["shift_accuracy"]) == {"0", "1", "2"}
    assert accuracy > 2.5 * CHANCE  # it learned something: its predictions depend on the image
    exact = (invariance["consistency"] == 1.0 and invariance["flip_rate_1px"] == 0.0
             and all(a == accuracy for a in invariance["shift_accuracy"].values()))
    assert exact == (pool == "aps"), invariance
