import torch

from poolbench.config import compose_config
from poolbench.model import build_model
from poolbench.speed import add_mfu, flops_per_image, throughput


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
    mfu = add_mfu(speed, 1000, 1e9)
    assert mfu["train_mfu"] == 3 * 1000 * speed["train_images_per_s"] / 1e9


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
