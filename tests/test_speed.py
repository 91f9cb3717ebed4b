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
