import copy

import pytest
import torch
from torch import nn

from poolbench.errors import UsageError
from poolbench.model import GlobalAveragePool, PoolMaker, SmallCNN, inference_copy
from poolbench.pools import POOLS


def test_global_average_pool_matches_adaptive_avg_pool_and_its_gradient():
    x = torch.randn(3, 4, 5, 6, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert torch.allclose(GlobalAveragePool()(x), nn.AdaptiveAvgPool2d(1)(x))
    assert torch.autograd.gradcheck(GlobalAveragePool(), (x,))


def test_global_average_pool_gradient_is_a_broadcast_view():
    # a dense NCHW gradient is what made ReLU's backward slow under channels_last
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    grad = torch.autograd.grad(GlobalAveragePool()(x).sum(), x)[0]
    assert grad.stride()[2:] == (0, 0)
    assert torch.allclose(grad, torch.full_like(x, 1 / 16))


def _trained_looking(pool: str) -> SmallCNN:
    """A SmallCNN whose BatchNorm layers hold non-trivial running statistics and affine terms."""
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 16, PoolMaker({"name": pool}), channels=[8, 16], readout="auto")
    model = model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 2.0)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    with torch.no_grad():
        model.train()(torch.randn(64, 1, 16, 16) * 3 + 1)
    return model.eval()


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_inference_copy_folds_batchnorm_and_computes_the_same_function(pool):
    model = _trained_looking(pool)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = inference_copy(model)
    x = torch.randn(32, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # every conv + BN pair of the stages is folded; the original model is untouched
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.features)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def small(pool: str, padding: str | None = None, readout: str = "auto", channels=(8, 16), **options) -> SmallCNN:
    torch.manual_seed(0)
    options = options if padding is None else {"padding": padding, **options}
    return SmallCNN(1, 10, 16, PoolMaker({"name": pool}), channels=list(channels), readout=readout, **options)


def test_padding_sets_every_conv3x3_and_zeros_is_the_previous_network_bit_for_bit():
    x = torch.randn(4, 1, 16, 16)
    default, zeros, circular = small("max"), small("max", "zeros"), small("max", "circular")
    convs = [m for m in circular.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(m.padding_mode == "circular" and m.padding == (1, 1) for m in convs)
    assert all(m.padding_mode == "zeros" for m in default.modules() if isinstance(m, nn.Conv2d))
    assert torch.equal(default.eval()(x), zeros.eval()(x))
    assert not torch.allclose(default(x), circular.eval()(x))  # same weights, other borders
    with pytest.raises(UsageError, match=r"^model\.padding must be zeros or circular, got 'reflect'\.$"):
        small("max", "reflect")


def test_inference_copy_keeps_circular_padding():
    model = small("aps", "circular")
    with torch.no_grad():
        model.train()(torch.randn(32, 1, 16, 16) * 2 + 1)  # running statistics that fold into something
    folded = inference_copy(model.eval())
    assert all(m.padding_mode == "circular" for m in folded.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(8, 1, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_circular_padding_aps_and_gap_make_the_network_invariant_to_circular_shifts():
    x = torch.randn(6, 1, 16, 16)  # 16 = 4 x 2^2: every APS of the two stages meets an even size
    shifts = [(1, 0), (0, 1), (1, 1), (3, -2), (-5, 7)]
    invariant, control = small("aps", "circular", "gap").eval(), small("max", "circular", "gap").eval()
    with torch.inference_mode():
        for model, exact in ((invariant, True), (inference_copy(invariant), True), (control, False)):
            base = model(x)
            moved = [model(torch.roll(x, shift, (2, 3))) for shift in shifts]
            # the same function up to the order of the global average pool's sum
            assert all(torch.allclose(out, base, rtol=0, atol=1e-5) for out in moved) == exact


def relu_first(model: nn.Module) -> nn.Module:
    """The same model with every (operator, ReLU) pair put back in the written order ReLU, operator."""
    for block in model.modules():
        if isinstance(block, nn.Sequential):
            for i in range(len(block) - 1):
                if getattr(block[i], "commutes_with_relu", False) and isinstance(block[i + 1], nn.ReLU):
                    block[i], block[i + 1] = block[i + 1], block[i]
    return model


def loss_and_grads(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A training-mode loss of `net` on `x` and its parameters' gradients, from a fixed seed (fractional
    draws its regions in training)."""
    torch.manual_seed(1)
    loss = net(x).logsumexp(1).sum()
    loss.backward()
    return loss.detach(), [p.grad for p in net.parameters()]


@pytest.mark.parametrize("pool", ["max", "fractional"])
def test_a_max_runs_before_its_relu_with_the_same_values_and_gradients(pool):
    model = small(pool, channels=(8, 16, 16)).to(memory_format=torch.channels_last)
    assert model.features[2].commutes_with_relu and isinstance(model.features[3], nn.ReLU)
    reference = relu_first(copy.deepcopy(model))
    assert isinstance(reference.features[2], nn.ReLU)
    x = torch.randn(16, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    (loss, grads), (expected_loss, expected_grads) = loss_and_grads(model, x), loss_and_grads(reference, x)
    assert torch.equal(loss, expected_loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, expected_grads))


@pytest.mark.parametrize("pool", ["avg", "softpool", "lip"])
def test_operators_that_do_not_commute_with_relu_keep_it_first(pool):
    model = small(pool)
    assert isinstance(model.features[2], nn.ReLU)


def test_convs_adds_width_to_width_convolutions_after_each_slot_at_the_pooled_resolution():
    model = small("max", convs=[1, 3])
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2d", "BatchNorm2d", "MaxPool", "ReLU",
                     "Conv2d", "BatchNorm2d", "MaxPool", "ReLU",
                     "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU"]
    extra = [m for m in model.features if isinstance(m, nn.Conv2d)][2:]
    assert all(m.in_channels == m.out_channels == 16 for m in extra)
    # the extras run on the 4x4 map the second slot leaves, and keep it 4x4
    assert model.features[:8](torch.randn(2, 1, 16, 16)).shape == (2, 16, 4, 4)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert model.classifier.in_features == 16 * 4 * 4
    every = small("max", convs=2)
    assert sum(isinstance(m, nn.Conv2d) for m in every.features) == 4


def test_convs_1_is_the_network_without_the_option_so_saved_weights_still_load():
    x = torch.randn(4, 1, 16, 16)
    explicit = small("max", convs=1)
    assert torch.equal(small("max").eval()(x), explicit.eval()(x))
    # the parameter names and shapes of the network before model.convs existed: its checkpoints load
    shapes = {k: tuple(v.shape) for k, v in small("max").state_dict().items() if not k.endswith("num_batches_tracked")}
    assert shapes == {
        "features.0.weight": (8, 1, 3, 3), "features.1.weight": (8,), "features.1.bias": (8,),
        "features.1.running_mean": (8,), "features.1.running_var": (8,),
        "features.4.weight": (16, 8, 3, 3), "features.5.weight": (16,), "features.5.bias": (16,),
        "features.5.running_mean": (16,), "features.5.running_var": (16,),
        "classifier.weight": (10, 16 * 4 * 4), "classifier.bias": (10,),
    }


@pytest.mark.parametrize("convs", [0, [1], [1, 0], "2", True, [1, 2.0]])
def test_convs_must_be_positive_integers_one_per_stage(convs):
    with pytest.raises(UsageError, match=r"^model\.convs must be a positive integer or a list of 2 of them"):
        small("max", convs=convs)


def test_a_run_saved_before_model_convs_and_pool_first_existed_resumes_and_loads_as_it_ran(tmp_path):
    from omegaconf import OmegaConf

    from poolbench.config import compose_config
    from poolbench.train import settings_differ

    now = compose_config(["data=shapes"])
    old = OmegaConf.to_container(now, resolve=True)
    del old["model"]["convs"], old["model"]["pool_first"]
    assert settings_differ(now, old) == []
    deeper = compose_config(["data=shapes", "model.convs=2"])
    assert settings_differ(deeper, old) == ["model.convs=2 (run has 1)"]
    from poolbench.model import build_model
    rebuilt = build_model(OmegaConf.create(old))  # what loading the old run builds
    assert sum(isinstance(m, nn.Conv2d) for m in rebuilt.features) == len(old["model"]["channels"])


def test_pool_first_puts_the_slot_between_the_convolution_and_its_batchnorm():
    model = small("max", pool_first=[True, False], convs=[2, 1])
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2d", "MaxPool", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                     "Conv2d", "BatchNorm2d", "MaxPool", "ReLU"]
    every = small("avg", pool_first=True)
    assert [type(m).__name__ for m in every.features][:4] == ["Conv2d", "AvgPool2d", "BatchNorm2d", "ReLU"]
    # evaluation's folded copy leaves a BatchNorm that follows a slot alone, and computes the same
    with torch.no_grad():
        model.train()(torch.randn(32, 1, 16, 16) * 2 + 1)
    model.eval()
    folded = inference_copy(model)
    x = torch.randn(8, 1, 16, 16)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.features) == 1
    assert torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool_first", [1, "true", [True], [True, 0]])
def test_pool_first_must_be_booleans_one_per_stage(pool_first):
    with pytest.raises(UsageError, match=r"^model\.pool_first must be true, false or a list of 2 of them"):
        small("max", pool_first=pool_first)
