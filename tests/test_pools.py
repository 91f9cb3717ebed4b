"""Every registered operator keeps the slot's contract (timm-style: one test, all operators),
then each operator's own formula."""

import math

import pytest
import torch
import torch.nn.functional as F

from poolbench.errors import UsageError
from poolbench.pools import POOLS, build_pool, get_spec
from poolbench.pools.basic import fractional_max_pool_2x2
from poolbench.pools.contract import check_operator

NAMES = sorted(POOLS)
CHANNELS = 4
ARTICLE = torch.tensor([[0, 0, 1, 5], [0, 1, 5, 1], [1, 5, 1, 0], [5, 1, 0, 0]], dtype=torch.float32).view(1, 1, 4, 4)


def make(name, **options):
    torch.manual_seed(0)
    return build_pool({"name": name, **options}, CHANNELS)


def windows(x):
    """(N, C, 2h, 2w) -> (N, C, h, w, 4): the reference way to see every 2x2 window."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    return x.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)


# --- the contract, for every operator ---------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [8, 9, 15])
def test_output_shape_follows_the_size_rule(name, size):
    pool = make(name).eval()
    out = pool(torch.randn(2, CHANNELS, size, size))
    assert out.shape[:2] == (2, CHANNELS)
    rule = get_spec(name).size_rule
    expected = {"floor(H/2)": size // 2, "ceil(H/2)": math.ceil(size / 2),
                "floor(H*ratio)": int(size / math.sqrt(2)), "H (1 at the readout)": size}[rule]
    assert out.shape[-2:] == (expected, expected)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradient_reaches_input_and_parameters(name, mode):
    pool = make(name).train(mode == "train")
    x = torch.randn(2, CHANNELS, 8, 8, requires_grad=True)
    pool(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    for param in pool.parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic(name):
    pool = make(name).eval()
    x = torch.randn(3, CHANNELS, 10, 10)
    assert torch.equal(pool(x), pool(x))
    # and independent of what else is in the batch
    assert torch.allclose(pool(x)[:1], pool(x[:1]), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1e4, -1e4, -1.0])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_outputs_are_finite_for_large_and_negative_inputs(name, scale, mode):
    pool = make(name).train(mode == "train")
    x = torch.rand(2, CHANNELS, 8, 8) * scale
    x[0, 0, :2, :2] = 0.0  # a window of zeros too
    assert torch.isfinite(pool(x)).all()


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_gives_same_result(name):
    pool = make(name).eval()
    x = torch.randn(2, CHANNELS, 8, 8)
    assert torch.allclose(pool(x), pool(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_bf16_autocast_works_and_agrees_with_fp32(name, scale):
    pool = make(name).eval()
    x = torch.randn(2, CHANNELS, 8, 8) * scale
    reference = pool(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool(x.bfloat16())
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert torch.allclose(out.float(), reference, rtol=0.05, atol=0.05 * scale)


# --- each operator's own formula ----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_an_operator_claiming_to_commute_with_relu_does(name):
    # the backbones run such an operator before its ReLU (model.relu_and_pool)
    op = make(name).eval()
    x = torch.randn(2, CHANNELS, 9, 9)
    commutes = torch.equal(torch.relu(op(x)), op(torch.relu(x)))
    assert commutes or not getattr(op, "commutes_with_relu", False)
    assert getattr(op, "commutes_with_relu", False) == (name in ("max", "fractional"))


def test_the_contract_refuses_a_false_claim_to_commute_with_relu():
    class AverageClaimingToCommute(torch.nn.AvgPool2d):
        commutes_with_relu = True

        def __init__(self, channels):
            super().__init__(2)

    with pytest.raises(UsageError, match=r"\(commutes_with_relu\): relu\(op\(x\)\) differs"):
        check_operator(AverageClaimingToCommute, CHANNELS, "pool._target_=myops.Average")
    check_operator(lambda channels: make("max"), CHANNELS, "pool._target_=myops.Max")  # a true claim passes


def test_max_and_avg_give_the_articles_4x4_example():
    assert build_pool({"name": "max"}, 1)(ARTICLE).view(2, 2).tolist() == [[1, 5], [5, 1]]
    assert build_pool({"name": "avg"}, 1)(ARTICLE).view(2, 2).tolist() == [[0.25, 3], [3, 0.25]]


def test_attention_starts_as_average_pooling():
    x = torch.randn(2, CHANNELS, 8, 8)
    assert torch.allclose(make("attention")(x), F.avg_pool2d(x, 2), atol=1e-6)


def test_attention_equals_softmax_over_unfolded_windows_with_the_same_gradient():
    pool = make("attention")
    torch.nn.init.normal_(pool.logit.weight, std=3.0)  # weights far from uniform
    x = torch.randn(2, CHANNELS, 9, 9, requires_grad=True)
    crop = x[..., :8, :8]
    reference = (windows(crop) * torch.softmax(windows(pool.logit(crop)), -1)).sum(-1)
    out = pool(x)
    assert torch.allclose(out, reference, atol=1e-5)
    grad, = torch.autograd.grad(out.square().sum(), x)
    reference_grad, = torch.autograd.grad(reference.square().sum(), x)
    assert torch.allclose(grad, reference_grad, atol=1e-4)


def test_softpool_is_the_softmax_weighted_mean_and_stable_in_half_precision():
    x = torch.randn(2, CHANNELS, 8, 8) * 5
    w = windows(x)
    assert torch.allclose(make("softpool")(x), (w * torch.softmax(w, -1)).sum(-1), atol=1e-5)
    big = torch.full((1, 1, 2, 2), 60000.0)
    for dtype in (torch.float16, torch.bfloat16):
        assert make("softpool")(big.to(dtype)).float().item() == pytest.approx(60000.0, rel=1e-2)


def test_lp_is_the_power_mean_of_magnitudes_and_matches_lppool2d_for_positive_inputs():
    x = torch.rand(2, CHANNELS, 8, 8) + 0.1
    for p in (1.0, 2.0, 3.0):
        expected = torch.nn.LPPool2d(p, 2)(x) / 4 ** (1 / p)
        assert torch.allclose(make("lp", p=p)(x), expected, rtol=1e-4)
    negative = -x
    assert torch.isnan(torch.nn.LPPool2d(2.5, 2)(negative)).any()  # why lp exists
    assert torch.allclose(make("lp", p=2.5)(negative), make("lp", p=2.5)(x))
    assert torch.allclose(make("lp", p=100)(x), F.max_pool2d(x, 2), rtol=0.02)


def test_blur_is_max_stride_1_then_a_normalized_binomial_blur():
    pool = make("blur", blur_size=3)
    x = torch.randn(1, CHANNELS, 8, 8)
    expected = F.pad(F.max_pool2d(x, 2, stride=1), (1, 1, 1, 1), mode="reflect")
    kernel = torch.tensor([1.0, 2, 1]).outer(torch.tensor([1.0, 2, 1])) / 16
    expected = F.conv2d(expected, kernel.expand(CHANNELS, 1, 3, 3), stride=2, groups=CHANNELS)
    assert torch.allclose(pool(x), expected, atol=1e-6)
    assert torch.equal(make("blur", blur_size=1)(x), F.max_pool2d(x, 2))
    constant = torch.full((1, CHANNELS, 8, 8), 2.0)
    for size in range(1, 8):
        assert torch.allclose(make("blur", blur_size=size)(constant), torch.full((1, CHANNELS, 4, 4), 2.0))
    assert make("blur")(torch.randn(1, CHANNELS, 2, 2)).shape[-1] == 1  # too small to reflect


def test_mixed_and_gated_start_halfway_between_max_and_avg_and_learn():
    x = torch.randn(2, CHANNELS, 8, 8)
    halfway = (F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)) / 2
    for name in ("mixed", "gated"):
        pool = make(name)
        assert torch.allclose(pool(x), halfway, atol=1e-6)
        assert sum(p.numel() for p in pool.parameters()) == (1 if name == "mixed" else 4)
        per_channel = sum(p.numel() for p in make(name, per_channel=True).parameters())
        assert per_channel == CHANNELS * (1 if name == "mixed" else 4)
    mostly_max = make("mixed", alpha=0.9)(x)
    assert torch.allclose(mostly_max, 0.9 * F.max_pool2d(x, 2) + 0.1 * F.avg_pool2d(x, 2), atol=1e-5)
    gated = make("gated")
    with torch.no_grad():
        gated.gate.fill_(100.0)  # every positive-sum window gates fully to max
    y = torch.rand(1, CHANNELS, 4, 4) + 0.1
    assert torch.allclose(gated(y), F.max_pool2d(y, 2))


def test_stochastic_samples_in_proportion_to_activation_and_evaluates_the_expectation():
    pool = make("stochastic")
    x = torch.tensor([0.0, 1.0, 3.0, -2.0]).view(1, 1, 2, 2).expand(20000, 1, 2, 2).contiguous()
    torch.manual_seed(0)
    picked = pool.train()(x).flatten()
    assert set(picked.unique().tolist()) == {1.0, 3.0}  # zero and negative values are never drawn
    assert (picked == 3.0).float().mean().item() == pytest.approx(0.75, abs=0.02)
    assert pool.eval()(x[:1]).item() == pytest.approx((1 * 1 + 3 * 3) / 4)
    all_negative = -torch.rand(1, 1, 2, 2) - 0.5
    assert pool.eval()(all_negative).item() == pytest.approx(all_negative.mean().item())
    assert pool.train()(all_negative).item() in all_negative.flatten().tolist()


def test_fractional_trains_with_random_regions_and_evaluates_fixed():
    pool = make("fractional")
    x = torch.randn(2, CHANNELS, 16, 16)
    assert pool(x).shape[-1] == int(16 / 2**0.5)
    torch.manual_seed(1)
    first = pool.train()(x)
    torch.manual_seed(2)
    assert not torch.equal(first, pool(x))  # training draws new regions


@pytest.mark.parametrize("shape, out_size", [
    ((4, 16, 28, 28), (19, 19)), ((4, 8, 13, 9), (9, 6)), ((3, 5, 5, 5), (3, 3)), ((2, 3, 2, 3), (1, 2)),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fractional_matches_torch_kernel_values_and_gradients(shape, out_size, channels_last):
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    samples = torch.rand(shape[0], shape[1], 2)
    ours = fractional_max_pool_2x2(x, out_size, samples)
    torch_kernel = F.fractional_max_pool2d(x, 2, output_size=out_size, _random_samples=samples)
    assert torch.equal(ours, torch_kernel)
    grad = torch.randn_like(ours)
    assert torch.equal(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(torch_kernel, x, grad)[0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_fractional_regions_shared_by_every_image_match_torch_kernel(channels_last):
    # evaluation's samples are (1, C, 2): one index_select on a channels_last map
    x = torch.randn(5, 6, 13, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    samples = torch.rand(1, 6, 2)
    with torch.inference_mode():
        ours = fractional_max_pool_2x2(x, (9, 7), samples)
        torch_kernel = F.fractional_max_pool2d(x, 2, output_size=(9, 7), _random_samples=samples.expand(5, 6, 2))
    assert torch.equal(ours, torch_kernel)
    assert ours.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_fractional_training_draws_the_same_regions_as_torch():
    # resuming a run relies on the same global-generator draws as torch's own op
    x = torch.randn(2, 4, 13, 13)
    pool = make("fractional").train()
    torch.manual_seed(3)
    ours = pool(x)
    torch.manual_seed(3)
    assert torch.equal(ours, F.fractional_max_pool2d(x, 2, output_size=(9, 9)))
    fixed = torch.full((2, 4, 2), 0.5)
    assert torch.equal(pool.eval()(x), F.fractional_max_pool2d(x, 2, output_size=(9, 9), _random_samples=fixed))


# --- options and names ------------------------------------------------------------------------

def test_unknown_pool_names_the_valid_ones():
    with pytest.raises(UsageError, match="choose one of: .*max"):
        build_pool({"name": "nope"}, 4)


@pytest.mark.parametrize("name, options, message", [
    ("fractional", {"ratio": 1.5}, r"pool.ratio must be a number in \(0, 1\), got 1.5"),
    ("lp", {"p": 0.5}, r"pool.p must be a number in \[1, 100\], got 0.5"),
    ("lp", {"p": "abc"}, r"pool.p must be a number .*got 'abc'"),
    ("blur", {"blur_size": 2.5}, r"pool.blur_size must be an integer in \[1, 7\]"),
    ("blur", {"blur_size": 9}, r"pool.blur_size must be an integer in \[1, 7\]"),
    ("mixed", {"alpha": 1}, r"pool.alpha must be a number in \(0, 1\)"),
    ("mixed", {"per_channel": "yes"}, r"pool.per_channel must be true or false"),
    ("gated", {"per_channel": 3}, r"pool.per_channel must be true or false"),
    ("max", {"size": 3}, r"pool\.size is not an option of pool 'max' \(its options: none\)\."),
    ("lp", {"q": 2}, r"pool\.q is not an option of pool 'lp' \(its options: pool\.p\)\."),
    ("mixed", {"beta": 1},
     r"pool\.beta is not an option of pool 'mixed' \(its options: pool\.alpha, pool\.per_channel\)"),
])
def test_bad_options_are_usage_errors_naming_the_key(name, options, message):
    with pytest.raises(UsageError, match=message):
        build_pool({"name": name, **options}, 4)


def test_options_and_their_defaults_come_from_the_operators_signature():
    import inspect

    assert get_spec("lp").options() == {"p": 3.0} and get_spec("lp").config() == {"name": "lp", "p": 3.0}
    assert get_spec("fractional").options() == {"ratio": pytest.approx(math.sqrt(0.5))}
    assert get_spec("mixed").options() == {"alpha": 0.5, "per_channel": False}
    assert get_spec("max").config() == {"name": "max"}
    for name in NAMES:
        spec = get_spec(name)
        first = next(iter(inspect.signature(spec.factory).parameters))
        assert first == "channels", name  # every operator is called as factory(channels, **options)
        assert set(spec.option_help) == set(spec.options()), name  # every option is explained for `list`


def test_a_value_given_for_an_option_replaces_its_default():
    assert make("lp", p=2.0).p == 2.0 and make("lp").p == 3.0
    assert make("blur", blur_size=5).kernel.shape[-1] == 5


def test_lip_is_the_official_simplified_lip_formula_with_the_same_gradient():
    # y = sum_w e^{l_w} x_w / sum_w e^{l_w} over 3x3 windows (stride 2, padding 1) clipped to the
    # image, l = 12 sigmoid(InstanceNorm(conv3x3(x))): computed here by unfolding the windows
    pool = make("lip")
    torch.nn.init.normal_(pool.weight, std=0.5)  # the official zero start would make every logit equal
    torch.nn.init.uniform_(pool.norm.weight, 0.5, 2.0)
    torch.nn.init.uniform_(pool.norm.bias, -1.0, 1.0)
    x = torch.randn(2, CHANNELS, 9, 9, requires_grad=True)
    logits = 12 * torch.sigmoid(F.instance_norm(F.conv2d(x, pool.weight, padding=1),
                                                weight=pool.norm.weight, bias=pool.norm.bias))
    weights = F.pad(torch.exp(logits), (1, 1, 1, 1))  # zero weight outside the image
    values = F.pad(x, (1, 1, 1, 1))
    size = (9 + 2 - 3) // 2 + 1  # floor((H + 2 padding - kernel 3) / stride 2) + 1 = ceil(H/2)
    def window_sums(t):  # (N, C, H+2, W+2) -> (N, C, size, size): the sum over each 3x3 window
        return F.unfold(t, kernel_size=3, stride=2).view(2, CHANNELS, 9, size, size).sum(2)

    reference = window_sums(weights * values) / window_sums(weights)
    out = pool(x)
    assert out.shape == (2, CHANNELS, 5, 5) and get_spec("lip").size_rule == "ceil(H/2)"
    assert torch.allclose(out, reference, atol=1e-5)
    grad, = torch.autograd.grad(out.square().sum(), x)
    reference_grad, = torch.autograd.grad(reference.square().sum(), x)
    assert torch.allclose(grad, reference_grad, atol=1e-4)


def test_lip_starts_as_3x3_average_pooling_inside_the_image_and_learns_from_there():
    pool = make("lip")
    x = torch.randn(2, CHANNELS, 8, 8)
    assert torch.allclose(pool(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), atol=1e-6)
    pool(x).square().sum().backward()
    assert pool.weight.grad.abs().sum() > 0  # the zero conv still gets a gradient
    assert sum(p.numel() for p in pool.parameters()) == 9 * CHANNELS**2 + 2 * CHANNELS
    one_pixel = torch.randn(2, CHANNELS, 1, 1)
    assert torch.equal(pool.train()(one_pixel), one_pixel)  # InstanceNorm needs two elements; one is its own mean


def phase(x, i, j):
    return x[..., i::2, j::2]


def test_aps_keeps_the_polyphase_component_of_largest_l2_norm_over_all_channels():
    x = torch.rand(2, 2, 6, 6)
    x[0, :, 1::2, 0::2] += 1.0   # image 0: component (1, 0) is the largest in both channels
    x[1, 0, 0::2, 1::2] += 3.0   # image 1: (0, 1) is the largest in channel 0 ...
    x[1, 1, 1::2, 1::2] += 2.0   # ... (1, 1) in channel 1, but (0, 1) over both: 3^2 > 2^2
    out = build_pool({"name": "aps"}, 2)(x)
    assert torch.equal(out[0], phase(x[0], 1, 0)) and torch.equal(out[1], phase(x[1], 0, 1))
    tie = torch.ones(1, 2, 4, 4)  # every component ties: argmax keeps the first, (0, 0)
    assert torch.equal(build_pool({"name": "aps"}, 2)(tie), phase(tie, 0, 0))


@pytest.mark.parametrize("size", [8, 10])
def test_aps_output_moves_with_a_circular_shift_of_its_input(size):
    # shifting x by (dy, dx) hands component (i, j) to ((i + dy) % 2, (j + dx) % 2): APS follows it,
    # and its output is the unshifted output rolled by ((i + dy) // 2, (j + dx) // 2), exactly
    pool = make("aps").eval()
    x = torch.randn(3, CHANNELS, size, size)
    out = pool(x)
    chosen = [next((i, j) for i in (0, 1) for j in (0, 1) if torch.equal(out[b], phase(x[b], i, j)))
              for b in range(3)]
    for dy, dx in [(1, 0), (0, 1), (1, 1), (3, -1), (-2, 5), (size + 1, 2)]:
        shifted = pool(torch.roll(x, (dy, dx), (2, 3)))
        for b, (i, j) in enumerate(chosen):
            assert torch.equal(shifted[b], torch.roll(out[b], ((i + dy) // 2, (j + dx) // 2), (1, 2))), (dy, dx)
    assert not torch.equal(F.max_pool2d(torch.roll(x, 1, 2), 2), torch.roll(F.max_pool2d(x, 2), 0, 2))


def test_aps_pads_odd_sizes_circularly_and_sends_the_gradient_to_the_kept_component_only():
    pool = make("aps")
    x = torch.randn(2, CHANNELS, 7, 8, requires_grad=True)
    padded = torch.cat([x, x[..., :1, :]], 2)  # the first row repeated below the last, as the official aps_pad
    out = pool(x)
    assert out.shape == (2, CHANNELS, 4, 4) and torch.equal(out, pool(padded))
    grad, = torch.autograd.grad(out.sum(), x)
    kept = [next((i, j) for i in (0, 1) for j in (0, 1) if torch.equal(out[b], phase(padded[b], i, j)))
            for b in range(2)]
    expected = torch.zeros(2, CHANNELS, 8, 8)
    for b, (i, j) in enumerate(kept):
        expected[b, :, i::2, j::2] = 1.0
    expected[:, :, 0] += expected[:, :, 7]  # the repeated first row passes its gradient back to row 0
    assert torch.equal(grad, expected[:, :, :7])


def test_aps_under_inference_mode_channels_last_and_bf16_autocast_keeps_the_exact_values_and_layout():
    pool = make("aps").eval()
    x = torch.randn(2, CHANNELS, 8, 8) * 3
    expected = pool(x)
    with torch.inference_mode():
        last = pool(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = pool(x.bfloat16())
    assert torch.equal(last, expected) and last.is_contiguous(memory_format=torch.channels_last)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.bfloat16())  # the same components


# --- the fused formulations (issue 16, item 4) against straightforward references -------------
# Each fast operator (analytic backward, fewer full-size passes) must give the values and input
# gradients of the plain autograd formula it replaced, in train and eval mode, for both layouts.

def _layouts(x):
    yield x
    yield x.contiguous(memory_format=torch.channels_last)


def _value_and_grad(fn, x, grad_out=None):
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    grad_out = torch.randn_like(out) if grad_out is None else grad_out
    grad, = torch.autograd.grad(out, x, grad_out)
    return out.detach(), grad, grad_out


@pytest.mark.parametrize("name", ["softpool", "attention"])
@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])  # 200: logits beyond window_exp's unshifted range
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_softmax_pools_match_the_unfolded_softmax_in_values_and_gradients(name, scale, mode):
    torch.manual_seed(1)
    pool = make(name).train(mode == "train")
    if name == "attention":
        torch.nn.init.normal_(pool.logit.weight, std=1.0)
        torch.nn.init.normal_(pool.logit.bias, std=1.0)

    def reference(x):
        crop = x[..., :8, :8]
        logits = pool.logit(crop) if name == "attention" else crop
        return (windows(crop) * torch.softmax(windows(logits), -1)).sum(-1)

    base = torch.randn(2, CHANNELS, 9, 9) * scale
    base[0, 0, :2, :2] = 0.0
    for x in _layouts(base):
        out, grad, grad_out = _value_and_grad(pool, x)
        ref, ref_grad, _ = _value_and_grad(reference, x, grad_out)
        assert torch.allclose(out, ref, atol=1e-5 * scale, rtol=1e-5)
        assert torch.allclose(grad, ref_grad, atol=1e-4, rtol=1e-4)
    if name == "attention":  # the logit's parameters get the reference's gradients too
        x = base.requires_grad_()
        params = list(pool.parameters())
        ours = torch.autograd.grad(pool(x).square().sum(), params)
        theirs = torch.autograd.grad(reference(x).square().sum(), params)
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=1e-3 * scale**2, rtol=1e-4)


def _lp_reference(x, p):
    """lp's formula through plain autograd: m (mean (|x|/m)^p)^(1/p), m the window's max, detached.

    The floor of 1/4 (for windows of zeros) is written so that its gradient passes at equality:
    the previous implementation's `clamp_min(0.25)` stopped it there, which zeroed the gradient
    of every window whose largest value dominates (one nonzero value, or (r_w)^p below float32's
    resolution: most windows at p = 100)."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    magnitude = x.abs()
    peak = F.max_pool2d(magnitude.detach(), 2)
    scale = F.interpolate(peak.clamp_min(torch.finfo(peak.dtype).tiny), scale_factor=2, mode="nearest")
    power_mean = F.avg_pool2d((magnitude / scale) ** p, 2)
    floored = power_mean + (0.25 - power_mean).clamp_min(0)  # = clamp_min(0.25), gradient 1 at equality
    return peak * floored ** (1 / p)


@pytest.mark.parametrize("p", [1.0, 3.0, 100.0])
def test_lp_passes_the_gradient_of_a_window_with_one_nonzero_value(p):
    # y = |x| / 4^(1/p) there, so dy/dx = sign(x) / 4^(1/p) (the clamp of the old code gave 0)
    x = torch.tensor([[0.0, 0.0], [-2.0, 0.0]]).view(1, 1, 2, 2).requires_grad_()
    make("lp", p=p)(x).sum().backward()
    assert x.grad.view(-1).tolist() == pytest.approx([0, 0, -(4 ** (-1 / p)), 0])


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0, 8.0, 100.0])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_lp_matches_the_autograd_power_mean_in_values_and_gradients(p, scale):
    torch.manual_seed(2)
    base = torch.randn(2, CHANNELS, 9, 9) * scale
    base[0, 0, :2, :2] = 0.0   # a window of zeros
    base[0, 1, 2, 2] = 0.0     # a zero inside a nonzero window
    base[1, 2, :2, :2] = -3.0 * scale  # a window of ties
    pool = make("lp", p=p)
    for x in _layouts(base):
        out, grad, grad_out = _value_and_grad(pool, x)
        ref, ref_grad, _ = _value_and_grad(lambda t: _lp_reference(t, p), x, grad_out)
        assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6 * scale)
        assert torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)
        assert torch.isfinite(grad).all()


def _stochastic_reference(x, uniform):
    """The previous stochastic draw, written plainly: torch.where for empty windows, a float
    one-hot built from the cumulative weights, y = 4 avg_pool(x * one_hot) through autograd."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    with torch.no_grad():
        weights = [x[..., i::2, j::2].clamp_min(0) for i in (0, 1) for j in (0, 1)]
        total = weights[0] + weights[1] + weights[2] + weights[3]
        weights = [torch.where(total > 0, w, 1.0) for w in weights]
        total = torch.where(total > 0, total, 4.0)
        u = (1 - uniform) * total
        chosen = torch.empty_like(x)
        reached_before = torch.zeros_like(u, dtype=torch.bool)
        cumulative = torch.zeros_like(u)
        for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            cumulative = cumulative + weights[k]
            reached = (u <= cumulative) if k < 3 else torch.ones_like(reached_before)
            chosen[..., i::2, j::2] = (reached & ~reached_before).to(x.dtype)
            reached_before = reached
    return F.avg_pool2d(x * chosen, 2) * 4


@pytest.mark.parametrize("mode", ["train", "seeded draw"])
def test_stochastic_draw_matches_the_plain_formulation_for_the_same_uniforms(mode):
    from poolbench.pools.weighted import StochasticPool

    torch.manual_seed(3)
    base = torch.randn(3, CHANNELS, 9, 9)
    base[0, 0, :2, :2] = -1.0  # a window without a positive value: drawn uniformly
    base[1, 1, 2:4, 2:4] = 0.0
    pool = make("stochastic")
    for x in _layouts(base):
        if mode == "train":  # the same global-generator draws as before: same uniforms, same layout
            torch.manual_seed(4)
            out, grad, grad_out = _value_and_grad(pool.train(), x)
            torch.manual_seed(4)
            crop = x[..., :8, :8]
            quarter = crop[..., 0::2, 0::2].clamp_min(0)
            uniform = torch.rand_like(quarter + quarter)
        else:  # eval.draws: uniforms from draw_seed, the same for every image
            pool.eval().draw_seed = 11
            out, grad, grad_out = _value_and_grad(pool, x)
            pool.draw_seed = None
            uniform = torch.rand((1, CHANNELS, 4, 4), generator=torch.Generator().manual_seed(11))
        ref, ref_grad, _ = _value_and_grad(lambda t: _stochastic_reference(t, uniform), x, grad_out)
        assert torch.equal(out, ref)
        assert torch.equal(grad, ref_grad)
    direct = StochasticPool._sample(base[..., :8, :8], torch.full((1, CHANNELS, 4, 4), 0.5))
    assert torch.equal(direct, _stochastic_reference(base, torch.full((1, CHANNELS, 4, 4), 0.5)))


def test_stochastic_draw_edge_cases_float64_nan_and_empty_maps():
    from poolbench.pools.weighted import StochasticPool

    torch.manual_seed(5)
    x = torch.randn(2, CHANNELS, 6, 6, dtype=torch.float64)
    uniform = torch.rand(1, CHANNELS, 3, 3, dtype=torch.float64)
    assert torch.equal(StochasticPool._sample(x, uniform), _stochastic_reference(x, uniform))
    # float32 maps keep their dtype whatever the uniforms' (the masks are made in the map's dtype)
    assert StochasticPool._sample(x.float(), uniform).dtype == torch.float32
    # a NaN makes its window's comparisons all false: the last position takes the gradient, and
    # the value stays NaN (NaN x 0 in the masked sum), as a NaN should
    nan = torch.rand(1, 1, 2, 2)
    nan[0, 0, 0, 0] = float("nan")
    nan.requires_grad_()
    out = StochasticPool._sample(nan, torch.full((1, 1, 1, 1), 0.5))
    assert out.isnan().all()
    out.sum().backward()
    assert nan.grad.flatten().tolist() == [0.0, 0.0, 0.0, 1.0]
    # no window at all: an empty result, no error
    assert StochasticPool._sample(torch.randn(2, CHANNELS, 0, 0)).shape == (2, CHANNELS, 0, 0)


@pytest.mark.parametrize("shape", [(3, 16, 28, 28), (2, 1, 6, 6), (2, 5, 8, 10)])
def test_aps_norms_equal_the_plain_float64_sums_in_either_layout(shape):
    from poolbench.pools.polyphase import polyphase_norms

    x = torch.randn(shape)
    n, c, h, w = shape
    plain = x.double().square().view(n, c, h // 2, 2, w // 2, 2).sum(dim=(1, 2, 4)).transpose(1, 2).reshape(n, 4)
    for layout in _layouts(x):
        norms = polyphase_norms(layout)
        assert torch.allclose(norms, plain, rtol=1e-12, atol=0)
        assert torch.equal(norms.argmax(1), plain.argmax(1))


@pytest.mark.parametrize("size", [8, 7])
def test_aps_values_and_gradients_equal_plain_indexing_in_either_layout(size):
    pool = make("aps")
    base = torch.randn(3, CHANNELS, size, size)

    def reference(x):  # the previous formulation: advanced indexing of the NCHW view, through autograd
        x = torch.cat([x, x[..., :1, :]], -2) if x.shape[-2] % 2 else x
        x = torch.cat([x, x[..., :, :1]], -1) if x.shape[-1] % 2 else x
        n, c, h, w = x.shape
        k = x.detach().double().square().view(n, c, h // 2, 2, w // 2, 2).sum(dim=(1, 2, 4)).transpose(1, 2)
        k = k.reshape(n, 4).argmax(1)
        phases = x.unflatten(2, (h // 2, 2)).unflatten(4, (w // 2, 2)).permute(0, 3, 5, 1, 2, 4)
        return phases[torch.arange(n), k % 2, k // 2]

    for x in _layouts(base):
        out, grad, grad_out = _value_and_grad(pool, x)
        ref, ref_grad, _ = _value_and_grad(reference, x, grad_out)
        assert torch.equal(out, ref) and torch.equal(grad, ref_grad)
        channels_last = torch.channels_last
        assert out.is_contiguous(memory_format=channels_last) == x.is_contiguous(memory_format=channels_last)

