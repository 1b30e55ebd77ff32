"""What does Singh et al.'s heavy augmentation cost the input pipeline, per image and CPU core?

    python benchmarks/augmentation_cost.py                    # 224 px crops of 500 x 375 images
    python benchmarks/augmentation_cost.py --repeats 400 --image_size 224

Times the training transform of the ImageNet configs on an already decoded image (JPEG decoding
is not included: it is the same with or without the augmentation), one process, one thread,
interleaved so that both variants see the same machine load:

- `crop+flip`: the random resized crop (scale 0.08-1) and flip alone;
- `heavy`: the same plus RandAugment `rand-m9-mstd0.5-inc1` and random erasing 0.25, as
  `finetune_imagenet_vit_{s,b}_apgd.yaml` set them.

It prints the median milliseconds per image of each, their ratio, and the images per second one
core sustains, from which the number of data-loading cores a GPU needs follows. Mixup / CutMix run
on the batch inside the training step (two elementwise ops) and are not part of this cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mimir_hf.data import RandomErasing, train_transform  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--source", type=int, nargs=2, default=(500, 375), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--repeats", type=int, default=200, help="Images per variant (interleaved).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    width, height = args.source
    # a natural-looking photo: smooth colour fields plus texture, so the ops do real work
    rng = np.random.default_rng(args.seed)
    base = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3)).astype(np.float64)
    from PIL import Image

    smooth = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    image = Image.fromarray(np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8))

    variants = {
        "crop+flip": train_transform(args.image_size, scale=(0.08, 1.0)),
        "heavy": train_transform(
            args.image_size, scale=(0.08, 1.0), rand_augment="rand-m9-mstd0.5-inc1", random_erasing=RandomErasing(0.25)
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, transform in variants.items():  # warm-up
        transform(image)
    for _ in range(args.repeats):
        for name, transform in variants.items():
            start = time.perf_counter()
            transform(image)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"image {width}x{height} -> {args.image_size} px, {args.repeats} images per variant, 1 thread, interleaved")
    for name, median in medians.items():
        print(f"{name:>10}: {1000 * median:7.2f} ms/image  ({1 / median:7.0f} images/s per core)")
    print(f"heavy / crop+flip: {medians['heavy'] / medians['crop+flip']:.2f}x")


if __name__ == "__main__":
    main()
