import pytest
import torch

from poolbench.config import compose_config
from poolbench.data import load_dataset
from poolbench.errors import RunError, UsageError
from poolbench.model import build_model
from poolbench.results import load_checkpoint
from poolbench.runtime import StopRequest
from poolbench.train import TrainingInterrupted, load_resume, one_cycle_lr, train

CPU = torch.device("cpu")
# fractional pooling draws from torch's global RNG, shift and flip from the loop's generator:
# an exact resume must restore both streams.
# A narrow model keeps each of these trainings well under a second.
SMALL = ["data=shapes", "model.channels=[8,16]", "data.train_size=640", "data.test_size=100", "train.epochs=2",
         "train.batch_size=64", "pool=fractional", "train.augment.shift=2", "train.augment.flip=true", "threads=1"]


class StopAfter(StopRequest):
    """A stop request that turns true on the n-th time the loop looks at it (one look per step)."""

    def __init__(self, n: int):
        super().__init__()
        self.looks, self.n = 0, n

    @property
    def requested(self):
        self.looks += 1
        return self.looks >= self.n

    @requested.setter
    def requested(self, value):
        pass


def setup(overrides=SMALL):
    cfg = compose_config(list(overrides))
    data = load_dataset(cfg.data)
    torch.manual_seed(int(cfg.seed))
    return cfg, data, build_model(cfg)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """SMALL trained straight through: (its state, the trained model)."""
    cfg, data, straight = setup()
    return train(cfg, straight, data, CPU, tmp_path_factory.mktemp("straight") / "model.pt"), straight


@pytest.mark.parametrize("stop_at", [4, 11])  # mid-epoch 1; at the end of epoch 1 (10 steps per epoch)
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, stop_at, uninterrupted):
    reference, straight = uninterrupted
    cfg, data, model = setup()
    with pytest.raises(TrainingInterrupted) as stopped:
        train(cfg, model, data, CPU, tmp_path / "stopped.pt", stop=StopAfter(stop_at))
    ckpt = load_checkpoint(tmp_path / "stopped.pt")
    assert (ckpt["epoch"], ckpt["step"]) == ((0, 4) if stop_at == 4 else (1, 0))
    assert stopped.value.state.epoch == ckpt["epoch"]

    _, _, resumed = setup()
    torch.manual_seed(999)  # whatever the global RNG holds now, the checkpoint's state must win
    state = train(cfg, resumed, data, CPU, tmp_path / "resumed.pt", resume=ckpt)
    assert [h["train_loss"] for h in state.history] == [h["train_loss"] for h in reference.history]
    assert [h["test_accuracy"] for h in state.history] == [h["test_accuracy"] for h in reference.history]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_loads_with_weights_only_and_holds_the_training_state(tmp_path):
    cfg, data, model = setup(SMALL[:-5] + ["train.epochs=1", "threads=1"])
    train(cfg, model, data, CPU, tmp_path / "model.pt")
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert {"model", "optimizer", "generator", "torch_rng", "epoch", "step", "history"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 0


class NaNAfter(torch.nn.Module):
    """Wraps a model; its outputs turn NaN from the given forward call on."""

    def __init__(self, model, after: int):
        super().__init__()
        self.model, self.after, self.calls = model, after, 0

    def forward(self, x):
        self.calls += 1
        out = self.model(x)
        return out * float("nan") if self.calls > self.after else out


def test_nan_loss_stops_within_a_few_steps_with_a_clear_error(tmp_path):
    cfg, data, model = setup(["data=shapes", "data.train_size=3200", "data.test_size=50", "train.batch_size=32",
                              "train.epochs=1", "model.channels=[4,8]", "threads=1"])
    wrapped = NaNAfter(model, after=3)
    with pytest.raises(RunError, match=r"Training diverged in epoch 1 by step 25 \(loss is nan\): lower train.lr"):
        train(cfg, wrapped, data, CPU, tmp_path / "model.pt")
    assert wrapped.calls == 25  # of 100 steps: stopped at the first read of the loss, not the epoch's end
    assert not (tmp_path / "model.pt").exists()  # no checkpoint of a diverged model


def test_resume_refuses_a_run_with_other_settings(tmp_path):
    from omegaconf import OmegaConf

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(SMALL), run / ".hydra" / "config.yaml")
    other = compose_config(SMALL + ["train.lr=0.05", f"train.resume={run}"])
    with pytest.raises(UsageError, match=r"these settings differ: train.lr=0.05 \(run has 0.1\)"):
        load_resume(other)
    same = compose_config(SMALL + [f"train.resume={run}", "threads=2", "eval.shift_pairs=1"])
    with pytest.raises(UsageError, match="has no checkpoint model.pt"):  # settings match; checkpoint absent
        load_resume(same)
    with pytest.raises(UsageError, match="not a poolbench run directory"):
        load_resume(compose_config(SMALL + [f"train.resume={tmp_path / 'nothing'}"]))


def test_one_cycle_warms_up_then_decays_to_zero():
    values = [one_cycle_lr(s, 100, 1.0, 0.2) for s in range(100)]
    assert values[19] == pytest.approx(1.0) and values[0] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(values[19:], values[20:])) and values[-1] < 0.02


def test_resume_checks_against_the_settings_saved_in_the_checkpoint(tmp_path):
    # A sweep job continued in its own folder has its .hydra/config.yaml rewritten before it
    # starts: the checkpoint's copy of the settings is what the run really trained with.
    from omegaconf import OmegaConf

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    cfg, data, model = setup(SMALL[:-5] + ["train.epochs=1", "threads=1"])
    train(cfg, model, data, CPU, run / "model.pt")
    edited = compose_config(SMALL[:-5] + ["train.epochs=1", "threads=1", "train.lr=0.05"])
    OmegaConf.save(edited, run / ".hydra" / "config.yaml")
    one_epoch = SMALL[:-5] + ["train.epochs=1", "threads=1"]
    with pytest.raises(UsageError, match=r"train.lr=0.05 \(run has 0.1\)"):
        load_resume(compose_config([*one_epoch, "train.lr=0.05", f"train.resume={run}"]))
    assert load_resume(compose_config([*one_epoch, f"train.resume={run}"]))["epoch"] == 1


def test_alternating_flip_mirrors_in_epoch_2_exactly_the_images_epoch_1_did_not(tmp_path):
    cfg, data, model = setup(["data=shapes", "model.channels=[8]", "data.train_size=64", "data.test_size=10",
                              "train.epochs=2", "train.batch_size=64", "train.augment.flip=alternate", "threads=1"])
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()) if module.training
                                    else None)
    train(cfg, model, data, CPU, tmp_path / "model.pt")
    from poolbench.data.transforms import Normalizer
    images = Normalizer(cfg.data.mean, cfg.data.std, CPU)(data.train_x)
    assert not torch.equal(images, images.flip(-1))  # the shapes are not all symmetric

    def mirrored(batch):  # per training image: was it shown mirrored? (each appears once per epoch)
        plain = (batch[:, None] == images[None]).flatten(2).all(-1)
        flipped = (batch[:, None] == images.flip(-1)[None]).flatten(2).all(-1)
        asymmetric = ~(images == images.flip(-1)).flatten(1).all(-1)
        assert (plain | flipped).any(0).all()  # every image was shown, one way or the other
        return flipped.any(0) & ~plain.any(0), asymmetric

    (first, asymmetric), (second, _) = mirrored(seen[0]), mirrored(seen[1])
    assert 10 < int(first[asymmetric].sum()) < 54
    assert torch.equal(second[asymmetric], ~first[asymmetric])
