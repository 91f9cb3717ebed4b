import time

import pytest
import torch
from torch import nn

from poolbench.config import compose_config
from poolbench.data import load_dataset
from poolbench.data.transforms import Normalizer
from poolbench.errors import UsageError
from poolbench.model import PoolMaker, SmallCNN, build_model, inference_copy
from poolbench.results import load_checkpoint
from poolbench.train import TrainingInterrupted, train
from poolbench.whitening import EIGENVALUE_EPS, FIT_IMAGES, PatchWhitening, fit_whitening

CPU = torch.device("cpu")


def correlated_images(n=400, channels=3, size=12):
    torch.manual_seed(0)
    x = torch.randn(n, channels, size, size)
    mixed = torch.einsum("dc,nchw->ndhw", torch.randn(channels, channels), x)  # colours correlated
    return nn.functional.avg_pool2d(mixed, 3, 1, 1) * 2 + 0.5                 # neighbours correlated


def patch_outputs(layer, x):
    """Each output channel at the positions where its 3x3 patch lies inside the image: (positions, C)."""
    with torch.no_grad():
        return layer(x)[:, :, 1:-1, 1:-1].permute(0, 2, 3, 1).reshape(-1, layer.out_channels)


def test_fit_decorrelates_the_patches_and_pairs_each_direction_with_its_negative():
    x = correlated_images()
    layer = PatchWhitening(3, 2 * 27)
    before = layer.weight.clone()
    layer.fit(x)
    out = patch_outputs(layer, x).double()
    half = out[:, :27]
    covariance = torch.cov(half.T)
    # each direction's variance is lambda / (lambda + eps): unit variance but for the epsilon that
    # keeps the faintest directions from being blown up; no correlation between directions
    patches = x.unfold(2, 3, 1).unfold(3, 3, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 27).double()
    eigenvalues = torch.linalg.eigvalsh(torch.cov(patches.T)).flip(0)
    assert torch.allclose(covariance.diag(), eigenvalues / (eigenvalues + EIGENVALUE_EPS), atol=1e-4)
    assert covariance.diag()[:20].min() > 0.99
    assert (covariance - torch.diag(covariance.diag())).abs().max() < 1e-4
    assert torch.allclose(out[:, 27:], -half, atol=1e-5)
    assert not torch.equal(layer.weight, before)


def test_a_narrower_layer_keeps_the_directions_of_largest_variance():
    x = correlated_images()
    full, narrow = PatchWhitening(3, 54), PatchWhitening(3, 8)
    full.fit(x)
    narrow.fit(x)
    # the same filters as the full bank's first four (its largest variances), up to each one's sign
    for i in range(4):
        same = torch.allclose(narrow.weight[i], full.weight[i], atol=1e-4)
        flipped = torch.allclose(narrow.weight[i], -full.weight[i], atol=1e-4)
        assert same or flipped, i


def test_the_filters_are_frozen_through_a_training_step():
    x = correlated_images(64)
    model = SmallCNN(3, 10, 12, PoolMaker({"name": "max"}), channels=[8, 16], readout="auto", whiten=True)
    stem = model.features[0]
    assert isinstance(stem, PatchWhitening) and not stem.weight.requires_grad
    stem.fit(x)
    fitted = stem.weight.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    nn.functional.cross_entropy(model(x), torch.randint(0, 10, (64,))).backward()
    optimizer.step()
    assert torch.equal(stem.weight, fitted)
    assert model.features[4].weight.grad is not None  # the next stage learns


def test_inference_copy_folds_batchnorm_into_the_whitening_layer_too():
    x = correlated_images(64)
    model = SmallCNN(3, 10, 12, PoolMaker({"name": "avg"}), channels=[8, 16], readout="auto", whiten=True)
    model.features[0].fit(x)
    with torch.no_grad():
        model.train()(x)
    model.eval()
    folded = inference_copy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.features)
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("value, message", [
    ("yes", r"^model\.whiten must be true or false, got 'yes'\.$"),
    (True, r"^model\.whiten=true needs an even first width of at most 18 for 1-channel images, "
           r"got model\.channels\[0\]=7: change model\.channels\.$"),
])
def test_bad_settings_name_the_fix(value, message):
    with pytest.raises(UsageError, match=message):
        SmallCNN(1, 10, 16, PoolMaker({"name": "max"}), channels=[7, 16], readout="auto", whiten=value)


def test_a_first_width_beyond_the_patch_directions_is_refused():
    with pytest.raises(UsageError, match=r"at most 18 .* got model\.channels\[0\]=20"):
        SmallCNN(1, 10, 16, PoolMaker({"name": "max"}), channels=[20, 16], readout="auto", whiten=True)


def test_whiten_changes_only_the_first_layer():
    def net(whiten):
        torch.manual_seed(0)
        return SmallCNN(3, 10, 16, PoolMaker({"name": "max"}), channels=[8, 16], readout="auto", whiten=whiten)
    learned, whitened = net(False), net(True)
    assert type(learned.features[0]) is nn.Conv2d and learned.features[0].weight.requires_grad
    assert isinstance(whitened.features[0], PatchWhitening)
    later = [k for k in learned.state_dict() if not k.startswith("features.0.")]
    assert later and all(torch.equal(learned.state_dict()[k], whitened.state_dict()[k]) for k in later)


def test_fitting_keeps_a_channels_last_weight_channels_last():
    layer = PatchWhitening(3, 8).to(memory_format=torch.channels_last)
    layer.fit(correlated_images(32))
    assert layer.weight.is_contiguous(memory_format=torch.channels_last)


def test_fit_whitening_samples_the_whole_training_set_not_its_first_images():
    # image-folder sources store the images class by class: the first FIT_IMAGES may all be one class
    torch.manual_seed(0)
    n = 2 * FIT_IMAGES
    images = torch.full((n, 1, 6, 6), 128, dtype=torch.uint8)             # the first half: one flat grey
    images[FIT_IMAGES:] = torch.randint(0, 256, (FIT_IMAGES, 1, 6, 6), dtype=torch.uint8)
    model = SmallCNN(1, 10, 6, PoolMaker({"name": "max"}), channels=[4], readout="auto", whiten=True)
    normalize = Normalizer([0.5], [0.25], CPU, False)
    fit_whitening(model, images, normalize)
    out = patch_outputs(model.features[0], normalize(images).float())[:, :2]
    # fitted to all of the set, the outputs have about unit variance over all of it (fitted to the
    # flat half alone, they would be scaled by 1/sqrt(eps), a variance in the hundreds)
    assert torch.allclose(out.var(0), torch.ones(2), atol=0.1)


WHITENED = ["data=shapes", "model.channels=[8,16]", "model.whiten=true", "data.train_size=640",
            "data.test_size=100", "train.epochs=2", "train.batch_size=64", "threads=1"]


def whitened_setup():
    cfg = compose_config(WHITENED)
    data = load_dataset(cfg.data)
    torch.manual_seed(0)
    return cfg, data, build_model(cfg)


class StopAfterOneStep:
    armed, requested = False, True


def test_training_fits_the_layer_to_the_normalized_training_images_before_the_first_step(tmp_path):
    cfg, data, model = whitened_setup()
    seen = []
    model.features[0].register_forward_pre_hook(lambda layer, args: seen.append(layer.weight.clone()))
    with pytest.raises(TrainingInterrupted):
        train(cfg, model, data, CPU, tmp_path / "model.pt", stop=StopAfterOneStep())
    expected = PatchWhitening(1, 8)
    expected.fit(Normalizer(cfg.data.mean, cfg.data.std, CPU, True)(data.train_x).float())  # 640 < FIT_IMAGES: all
    assert torch.allclose(seen[0], expected.weight, atol=1e-5)  # what the first step's forward used
    saved = load_checkpoint(tmp_path / "model.pt")["model"]["features.0.weight"]
    assert torch.allclose(saved, expected.weight, atol=1e-5)


def test_the_fit_counts_as_training_time(tmp_path, monkeypatch):
    import poolbench.train as train_module

    cfg, data, model = whitened_setup()
    real_fit = train_module.fit_whitening

    def slow_fit(*args):
        time.sleep(0.5)
        real_fit(*args)

    monkeypatch.setattr(train_module, "fit_whitening", slow_fit)
    state = train(cfg, model, data, CPU, tmp_path / "model.pt")
    assert state.history[0]["epoch_seconds"] >= 0.5 and state.train_seconds >= 0.5


def test_a_resumed_run_keeps_the_checkpoints_filters_and_does_not_refit(tmp_path):
    cfg, data, model = whitened_setup()
    with pytest.raises(TrainingInterrupted):
        train(cfg, model, data, CPU, tmp_path / "stopped.pt", stop=StopAfterOneStep())
    ckpt = load_checkpoint(tmp_path / "stopped.pt")
    assert ckpt["step"] == 1
    ckpt["model"]["features.0.weight"] *= 2  # not what a fit gives: a refit would replace it
    _, _, resumed = whitened_setup()
    train(cfg, resumed, data, CPU, tmp_path / "resumed.pt", resume=ckpt)
    assert torch.equal(resumed.features[0].weight, ckpt["model"]["features.0.weight"])


def test_fit_whitening_leaves_other_models_alone():
    cfg, data, _ = whitened_setup()
    plain = build_model(compose_config(WHITENED[:2] + WHITENED[3:]))
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    fit_whitening(plain, data.train_x, Normalizer(cfg.data.mean, cfg.data.std, CPU, True))
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())


def test_a_run_saved_before_model_whiten_existed_resumes_without_it(tmp_path):
    from omegaconf import OmegaConf

    from poolbench.train import settings_differ

    now = compose_config(WHITENED[:2] + WHITENED[3:])
    old = OmegaConf.to_container(now, resolve=True)
    del old["model"]["whiten"]
    assert settings_differ(now, old) == []
    assert settings_differ(compose_config(WHITENED), old) == ["model.whiten=True (run has False)"]
