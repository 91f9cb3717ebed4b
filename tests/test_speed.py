import torch

from poolbench import speed
from poolbench.config import compose_config
from poolbench.model import build_model
from poolbench.speed import MatmulRate, add_mfu, flops_per_image, throughput


def conv_flops(cfg):
    size, c_in, total = cfg.data.image_size, cfg.data.channels, 0
    for width in cfg.model.channels:
        total += 2 * 9 * c_in * width * size * size
        c_in, size = width, size // 2
    return total


def test_flops_count_pooling_too():
    cfg = compose_config(["data=shapes", "pool=max"])
    model = build_model(cfg)
    counted = flops_per_image(model, (1, 28, 28))
    assert counted > conv_flops(cfg)  # convs + classifier + the max pools
    avg = flops_per_image(build_model(compose_config(["data=shapes", "pool=avg"])), (1, 28, 28))
    assert avg == counted  # same windows, same count


def test_throughput_leaves_the_model_untouched():
    cfg = compose_config(["data=shapes"])
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    speed = throughput(model, (1, 28, 28), 10, torch.device("cpu"), batch_size=8, warmup=1, iters=2)
    assert speed["infer_images_per_s"] > 0 and speed["train_images_per_s"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    mfu = add_mfu(speed, 1000, MatmulRate(1e9, "float32", "best of 5 rounds"))
    assert mfu["train_mfu"] == 3 * 1000 * speed["train_images_per_s"] / 1e9
    denominator = (mfu["matmul_flops_per_s"], mfu["matmul_dtype"], mfu["matmul_method"])
    assert denominator == (1e9, "float32", "best of 5 rounds")


def stub_mm(monkeypatch, seconds):
    """torch.mm's timings, in order: a list, or a function of the matrix size."""
    calls = iter(seconds) if isinstance(seconds, list) else None
    monkeypatch.setattr(speed, "_mm_seconds", lambda a, b, device: next(calls) if calls else seconds(a.shape[0]))
    return calls


def test_the_matmul_rate_is_the_best_rounds_median_after_a_stable_warm_up(monkeypatch):
    warm_up = [3.0, 1.0, 1.0]  # the first two disagree: one more call
    rounds = [[2.0, 2.0, 2.0], [1.0, 9.0, 1.0], [0.5, 9.0, 0.6], [3.0, 3.0, 3.0], [1.0, 1.0, 1.0]]
    calls = stub_mm(monkeypatch, warm_up + [s for r in rounds for s in r])
    rate = speed.matmul_rate(torch.device("cpu"), size=8)
    assert rate.flops_per_s == 2 * 8**3 / 0.6  # round 3's median; one slow call does not spoil a round
    assert rate.dtype == "float32"
    assert rate.method == "best of 5 rounds (median of 3 mm each) of 8x8 float32 after warm-up"
    assert next(calls, None) is None  # every timing used, no more


def test_the_matmul_size_shrinks_only_for_an_emulated_precision(monkeypatch):
    choose = speed.matmul_size.__wrapped__  # not the per-process cache
    stub_mm(monkeypatch, lambda n: 0.2)  # one 512 mm over 50 ms: bf16 on a CPU without native support
    assert choose(torch.device("cpu"), torch.bfloat16) == speed.MATMUL_SLOW_SIZE
    stub_mm(monkeypatch, lambda n: 0.015)  # a loaded CPU: small calls wait for a time slice; 1024 stays
    assert choose(torch.device("cpu"), torch.float32) == 1024
    stub_mm(monkeypatch, lambda n: 0.01 * (n / 2048) ** 3)  # a fast machine: doubled until a call takes 10 ms
    assert choose(torch.device("cpu"), torch.float32) == 2048


def slot_input_elements(model, input_shape) -> int:
    """Elements entering the downsampling slots of one image (every 4th layer of SmallCNN)."""
    sizes = []
    hooks = [slot.register_forward_pre_hook(lambda _, args: sizes.append(args[0][0].numel()))
             for slot in model.features[3::4]]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return sum(sizes)


def test_flops_count_the_arithmetic_inside_weighted_operators():
    # softpool per slot: exp(x - window peak), weights * x, two window sums, one division; avg: one window sum
    models = {pool: build_model(compose_config(["data=shapes", f"pool={pool}"])) for pool in ("avg", "softpool")}
    extra = flops_per_image(models["softpool"], (1, 28, 28)) - flops_per_image(models["avg"], (1, 28, 28))
    elements = slot_input_elements(models["avg"], (1, 28, 28))
    assert extra >= 4 * elements  # sub, exp, mul, one more window sum: 4 full-size passes at least
    assert extra <= 6 * elements
