import torch

from poolbench.data.transforms import Normalizer, alternating_flips, flip_where, random_flip, random_shift, shift_images


def test_circular_shift_matches_torch_roll_per_image():
    x = torch.randint(0, 255, (3, 2, 6, 7), dtype=torch.uint8)
    dy, dx = torch.tensor([0, 2, -3]), torch.tensor([1, -1, 3])
    out = shift_images(x, dy, dx, "circular")
    for i in range(3):
        assert torch.equal(out[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), dims=(1, 2)))


def test_translate_fills_vacated_pixels_with_background():
    x = torch.full((1, 1, 4, 4), 9, dtype=torch.uint8)
    out = shift_images(x, torch.tensor([1]), torch.tensor([-2]), "translate")
    assert out[0, 0, 0].tolist() == [0, 0, 0, 0]          # top row vacated
    assert out[0, 0, 1:, 2:].eq(0).all()                    # right two columns vacated
    assert out[0, 0, 1:, :2].eq(9).all()


def test_augmentations_keep_shape_and_dtype():
    x = torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    for out in (random_shift(x, 2, g), random_flip(x, g)):
        assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(random_shift(x, 0, g), x)


def test_flip_where_mirrors_exactly_the_masked_images():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 2, 3)
    out = flip_where(x, torch.tensor([True, False]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


def test_alternating_flips_are_half_the_images_and_the_same_for_the_same_seed():
    cpu = torch.device("cpu")
    flips = alternating_flips(1000, seed=3, device=cpu)
    assert flips.dtype == torch.bool and 400 < int(flips.sum()) < 600
    assert torch.equal(flips, alternating_flips(1000, seed=3, device=cpu))
    assert not torch.equal(flips, alternating_flips(1000, seed=4, device=cpu))


def test_normalizer_standardizes_and_uses_channels_last():
    norm = Normalizer([0.5], [0.25], torch.device("cpu"))
    out = norm(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
    assert torch.allclose(out.flatten(), torch.tensor([-2.0, 2.0]))
    assert out.is_contiguous(memory_format=torch.channels_last)
