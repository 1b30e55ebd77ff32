"""Singh et al.'s heavy training augmentation: RandAugment (PIL ops), random erasing, and their wiring."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import mimir_hf.data.rand_augment as rand_augment_module
from mimir_hf.data import RAND_AUGMENT_OPS, DataArguments, RandAugment, RandomErasing, parse_rand_augment, train_transform


def natural_image(size: int = 48, seed: int = 0) -> Image.Image:
    """A smooth gradient plus noise in 30..220: every op has something to change."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 200, size)
    array = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 110.0)], -1)
    array = array + rng.normal(0, 12, array.shape)
    return Image.fromarray(np.clip(array, 30, 220).astype(np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ---------------------------------------------------------------- RandAugment


def test_the_policy_string_is_read_as_timm_writes_it():
    assert parse_rand_augment("rand-m9-mstd0.5-inc1") == dict(
        magnitude=9.0, num_ops=2, magnitude_std=0.5, magnitude_max=10.0, increasing=True
    )
    policy = RandAugment.from_string("rand-n3-m7-inc0-mstd101-mmax12")
    assert (policy.num_ops, policy.magnitude, policy.increasing, policy.magnitude_max) == (3, 7.0, False, 12.0)
    assert math.isinf(policy.magnitude_std)  # timm: mstd > 100 means uniform in [0, m]
    assert RandAugment.from_string("rand") == RandAugment(magnitude=10.0, increasing=False)
    for bad, message in [
        ("autoaugment-v0", "timm's notation"),
        ("rand-w0", "not supported"),
        ("rand-m9-foo1", "Unknown section"),
        ("rand-inc2", "Cannot read"),
        ("rand-mx", "Unknown section"),
        ("rand-m12", r"magnitude must lie in \[0, 10\]"),
        ("rand-n0", "at least one op"),
    ]:
        with pytest.raises(ValueError, match=message):
            RandAugment.from_string(bad)


@pytest.mark.parametrize("name", RAND_AUGMENT_OPS)
def test_every_op_keeps_size_and_mode_and_changes_the_image(name):
    image = natural_image()
    torch.manual_seed(0)
    out = RandAugment(magnitude=9).apply_op(name, image)
    assert out.size == image.size and out.mode == "RGB"
    assert np.abs(pixels(out) - pixels(image)).mean() > 1.0, f"{name} at magnitude 9 left the image unchanged"


@pytest.mark.parametrize(
    "name", ["Rotate", "Solarize", "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"]
)
def test_graded_ops_are_the_identity_at_magnitude_zero(name):
    image = natural_image()
    assert np.array_equal(pixels(RandAugment(magnitude=0).apply_op(name, image)), pixels(image))


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "TranslateY", "Contrast", "Solarize", "Posterize"])
def test_severity_grows_with_the_magnitude(name):
    image = natural_image()
    changes = []
    for magnitude in (2, 5, 9):
        torch.manual_seed(1)  # the same sign for every magnitude
        changes.append(np.abs(pixels(RandAugment().apply_op(name, image, magnitude)) - pixels(image)).mean())
    assert changes[0] < changes[1] < changes[2], changes


def test_levels_follow_their_definitions():
    image = natural_image()
    increasing, original = RandAugment(magnitude=9), RandAugment(magnitude=9, increasing=False)
    assert np.array_equal(pixels(increasing.apply_op("Posterize", image)), pixels(ImageOps.posterize(image, 1)))  # 4 - int(3.6)
    assert np.array_equal(pixels(original.apply_op("Posterize", image)), pixels(ImageOps.posterize(image, 3)))  # int(3.6)
    assert np.array_equal(pixels(increasing.apply_op("Solarize", image)), pixels(ImageOps.solarize(image, 256 - 230)))
    assert np.array_equal(pixels(original.apply_op("Solarize", image)), pixels(ImageOps.solarize(image, 230)))
    added = pixels(increasing.apply_op("SolarizeAdd", image))
    low = pixels(image) < 128
    assert np.array_equal(added[low], np.minimum(pixels(image)[low] + 99, 255)) and np.array_equal(added[~low], pixels(image)[~low])
    # TranslateX moves the content by 0.45 * 9/10 of the width, a whole number of pixels here (width 40: 16.2 -> 16 with bicubic blur)
    image = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (8, 1, 3)))
    torch.manual_seed(0)
    shifted = pixels(RandAugment(magnitude=10 * 16 / (0.45 * 40)).apply_op("TranslateX", image))
    left = np.array_equal(shifted[:, :24], pixels(image)[:, 16:])
    right = np.array_equal(shifted[:, 16:], pixels(image)[:, :24])
    assert left or right
    assert (shifted[:, 24:] == 0).all() if left else (shifted[:, :16] == 0).all()  # filled with black


def test_ops_magnitudes_and_application_rate_match_the_policy(monkeypatch):
    """n ops drawn uniformly with replacement, each applied with probability 0.5 at N(9, 0.5^2) clipped to [0, 10]."""
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(rand_augment_module, "_apply", lambda name, image, f, increasing, fill: calls.append((name, f)) or image)
    policy = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    image = natural_image(8)
    torch.manual_seed(0)
    draws = 3000
    for _ in range(draws):
        policy(image)
    applied = len(calls) / (2 * draws)
    assert abs(applied - 0.5) < 4 * math.sqrt(0.25 / (2 * draws))
    counts = Counter(name for name, _ in calls)
    assert set(counts) == set(RAND_AUGMENT_OPS)
    expected = len(calls) / len(RAND_AUGMENT_OPS)
    assert all(abs(c - expected) < 5 * math.sqrt(expected) for c in counts.values()), counts
    magnitudes = np.array([f * 10 for _, f in calls])
    assert magnitudes.max() <= 10.0 and abs(magnitudes.mean() - 9.0) < 0.05 and 0.45 < magnitudes.std() < 0.55


def test_rand_augment_is_reproducible_under_a_seed_and_magnitude_matters():
    images = [natural_image(seed=s) for s in range(6)]

    def run(policy: RandAugment, seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        return [pixels(policy(image)) for image in images]

    strong = RandAugment.from_string("rand-m9-mstd0.5-inc1")
    first, again, other = run(strong, 0), run(strong, 0), run(strong, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    weak = run(RandAugment(magnitude=0, magnitude_std=0.5), 0)  # same draws of ops, magnitude 0
    assert not all(np.array_equal(a, b) for a, b in zip(first, weak))
    assert all(np.array_equal(a, pixels(i)) for a, i in zip(run(RandAugment(op_probability=0.0), 0), images))


def test_train_transform_with_rand_augment_and_erasing():
    transform = train_transform(32, rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25)
    array = np.asarray(natural_image(40))
    torch.manual_seed(0)
    outs = torch.stack([transform(array) for _ in range(16)])
    assert outs.shape == (16, 3, 32, 32) and outs.dtype == torch.float32 and 0 <= outs.min() and outs.max() <= 1
    torch.manual_seed(0)
    assert torch.equal(outs, torch.stack([transform(array) for _ in range(16)]))
    torch.manual_seed(0)
    plain = torch.stack([train_transform(32)(array) for _ in range(16)])
    assert not torch.equal(outs, plain)
    # the uint8 round trip around RandAugment is exact: with no op applied, a native-size image comes
    # out as crop-and-flip alone makes it, bit for bit (RandAugment's draws come after the crop's)
    native = np.asarray(natural_image(32))
    idle = train_transform(32, rand_augment=RandAugment(op_probability=0.0))
    for seed in range(8):
        torch.manual_seed(seed)
        expected = train_transform(32)(native)
        torch.manual_seed(seed)
        assert torch.equal(idle(native), expected)


# ---------------------------------------------------------------- random erasing


def _erased_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int] | None:
    changed = (before != after).any(0)
    if not changed.any():
        return None
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    assert changed[top:bottom, left:right].all(), "the erased pixels must fill a rectangle"
    return top, bottom, left, right


def test_random_erasing_erases_one_rectangle_with_the_configured_probability():
    image = torch.ones(3, 32, 40)
    erasing = RandomErasing(0.25, mode="const")
    torch.manual_seed(0)
    draws, erased = 2000, 0
    for _ in range(draws):
        out = erasing(image)
        box = _erased_box(image, out)
        if box is None:
            assert out is image
            continue
        erased += 1
        top, bottom, left, right = box
        h, w = bottom - top, right - left
        assert (out[:, top:bottom, left:right] == 0).all()
        assert 0.02 * 32 * 40 - (h + w) <= h * w <= 32 * 40 / 3 + (h + w)
        assert 0.3 * w - 1 <= h <= w / 0.3 + 1
    assert image.eq(1).all()  # never in place
    assert abs(erased / draws - 0.25) < 4 * math.sqrt(0.25 * 0.75 / draws)


def test_random_erasing_fills():
    image = torch.full((3, 64, 64), 0.5)
    torch.manual_seed(0)
    outs = [RandomErasing(1.0, mode="pixel")(image) for _ in range(50)]
    noise = torch.cat([out[out != 0.5] for out in outs])
    assert noise.min() >= 0 and noise.max() <= 1  # N(0, 1) clamped into [0, 1]: about half exact zeros, 16 % ones
    assert abs(float((noise == 0).float().mean()) - 0.5) < 0.02 and abs(float((noise == 1).float().mean()) - 0.159) < 0.02
    torch.manual_seed(0)
    out = RandomErasing(1.0, mode="rand")(image)
    top, bottom, left, right = _erased_box(image, out)
    region = out[:, top:bottom, left:right]
    assert (region == region[:, :1, :1]).all()  # one colour per channel
    torch.manual_seed(0)
    first = [RandomErasing(0.5, max_count=3)(image) for _ in range(10)]
    torch.manual_seed(0)
    assert all(torch.equal(a, RandomErasing(0.5, max_count=3)(image)) for a in first)
    assert RandomErasing(0.0)(image) is image
    for bad in (dict(probability=1.5), dict(mode="noise"), dict(max_count=0)):
        with pytest.raises(ValueError):
            RandomErasing(**{"probability": 0.25, **bad})


# ---------------------------------------------------------------- configuration


def test_data_arguments_build_the_augmentation():
    args = DataArguments(rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25, train_crop_min_scale=0.08)
    transform = args.train_transform(224)
    assert transform.scale == (0.08, 1.0) and transform.rand_augment == RandAugment.from_string("rand-m9-mstd0.5-inc1")
    assert transform.random_erasing == RandomErasing(0.25, mode="pixel", max_count=1)
    default = DataArguments().train_transform(224)
    assert default.rand_augment is None and default.random_erasing is None and default.scale == (0.2, 1.0)
    with pytest.raises(ValueError, match="Unknown section"):
        DataArguments(rand_augment="rand-m9-x")
    with pytest.raises(ValueError, match="random_erasing_mode"):
        DataArguments(random_erasing=0.25, random_erasing_mode="noise")
    with pytest.raises(ValueError, match="train_crop_min_scale"):
        DataArguments(train_crop_min_scale=0.0)
