import pytest
import torch
from test_train import CPU, SMALL, StopAfter, setup

from poolbench.errors import UsageError
from poolbench.lookahead import EVERY, Lookahead
from poolbench.results import load_checkpoint
from poolbench.train import TrainingInterrupted, train


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def perturb(net, amount):
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(amount)


def test_between_updates_the_model_trains_freely_and_at_an_update_it_returns_to_the_slow_weights():
    net = small_net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    lookahead = Lookahead(net, peak_decay=0.8, total_steps=10)
    perturb(net, 1.0)
    net[1].num_batches_tracked.fill_(7)  # an integer counter: not averaged, not reset
    lookahead.after_step(EVERY - 1)  # not an update step: nothing moves
    assert torch.equal(net[0].weight, start["0.weight"] + 1.0)

    lookahead.after_step(EVERY)  # halfway: decay 0.8 * 0.5**3 = 0.1, so 90% of the way to the trained weights
    for name, value in net.state_dict().items():
        if value.is_floating_point():  # the BatchNorm running statistics are averaged too
            torch.testing.assert_close(value, start[name] + 0.9, msg=name)
    assert int(net[1].num_batches_tracked) == 7


def test_the_last_step_updates_even_off_the_period_so_training_ends_on_the_slow_weights():
    net = small_net()
    start = net[0].weight.clone()
    lookahead = Lookahead(net, peak_decay=0.5, total_steps=EVERY + 2)
    perturb(net, 2.0)
    lookahead.after_step(EVERY + 2)  # decay 0.5: halfway
    torch.testing.assert_close(net[0].weight, start + 1.0)
    torch.testing.assert_close(lookahead.slow[0], start + 1.0)


def test_early_updates_barely_hold_training_back():
    net = small_net()
    start = net[0].weight.clone()
    lookahead = Lookahead(net, peak_decay=0.9, total_steps=1000)
    perturb(net, 1.0)
    lookahead.after_step(EVERY)  # decay 0.9 * (5/1000)**3: about 1e-7
    torch.testing.assert_close(net[0].weight, start + 1.0)
    assert torch.equal(lookahead.slow[0], net[0].weight)  # an update ran: the slow copy followed training


def test_a_run_with_lookahead_resumes_mid_epoch_bit_identically(tmp_path):
    overrides = SMALL + ["train.lookahead=0.9"]
    cfg, data, straight = setup(overrides)
    reference = train(cfg, straight, data, CPU, tmp_path / "straight.pt")

    cfg, data, model = setup(overrides)
    with pytest.raises(TrainingInterrupted):  # step 7: two steps past an update, so the slow weights differ
        train(cfg, model, data, CPU, tmp_path / "stopped.pt", stop=StopAfter(7))
    ckpt = load_checkpoint(tmp_path / "stopped.pt")
    live = [t for t in ckpt["model"].values() if t.is_floating_point()]
    assert ckpt["step"] == 7 and len(ckpt["lookahead"]) == len(live)
    assert not all(torch.equal(slow, now) for slow, now in zip(ckpt["lookahead"], live))  # a resume needs them
    _, _, resumed = setup(overrides)
    state = train(cfg, resumed, data, CPU, tmp_path / "resumed.pt", resume=ckpt)
    assert [h["train_loss"] for h in state.history] == [h["train_loss"] for h in reference.history]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_run_with_lookahead_ends_on_its_slow_weights_and_trains_something_else(tmp_path):
    cfg, data, model = setup(SMALL + ["train.lookahead=0.9"])
    averaged = train(cfg, model, data, CPU, tmp_path / "averaged.pt")
    slow = load_checkpoint(tmp_path / "averaged.pt")["lookahead"]
    live = [t for t in model.state_dict().values() if t.is_floating_point()]
    assert all(torch.equal(a, b) for a, b in zip(slow, live))
    plain_cfg, _, plain = setup(SMALL)
    plain_losses = [h["train_loss"] for h in train(plain_cfg, plain, data, CPU, tmp_path / "plain.pt").history]
    assert [h["train_loss"] for h in averaged.history] != plain_losses


def test_resuming_with_lookahead_from_a_checkpoint_without_slow_weights_is_refused(tmp_path):
    cfg, data, model = setup(SMALL)
    with pytest.raises(TrainingInterrupted):
        train(cfg, model, data, CPU, tmp_path / "stopped.pt", stop=StopAfter(4))
    cfg, data, model = setup(SMALL + ["train.lookahead=0.9"])
    with pytest.raises(UsageError, match="holds no slow weights"):
        train(cfg, model, data, CPU, tmp_path / "resumed.pt", resume=load_checkpoint(tmp_path / "stopped.pt"))
