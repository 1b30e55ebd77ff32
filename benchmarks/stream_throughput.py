"""Images per second of the streamed input pipeline against the map-style one, on the same local shards.

    python benchmarks/stream_throughput.py                          # 400 JPEGs (500 x 375) in 4 parquet shards
    python benchmarks/stream_throughput.py --workers 0 1 2 --rounds 3 --json stream_throughput.json
    python benchmarks/stream_throughput.py --heavy                  # + RandAugment and random erasing (APGD configs)

Writes synthetic ImageNet-like JPEGs (smooth colour fields plus texture, quality 90) into parquet
shards the way `datasets` writes them (`Dataset.to_parquet`), then times two pipelines that end in
the same training batches, both with the ImageNet pretraining transform (random resized crop to
224 + flip, bicubic, in [0, 1]) and `collate_images`:

- map-style: `load_image_dataset(folder, "train")` (the shards converted once into the Arrow cache;
  conversion not timed) under `with_transform`, a `DataLoader` drawing random images;
- streamed: `DataArguments(streaming=True)`: `ImageStream` over the same shards (shuffle buffer
  1000), its `StreamLoader`, as the trainers build it.

For each number of DataLoader workers (0 = the main process decodes), the two are timed in
interleaved rounds, so both see the same machine load; each round reads `--images` images (more
than the shards hold, so the stream's refill of its window at a new pass is timed too) after a first
batch that is not timed (worker start-up, the first window). Reported: median images/s of each, the ratio
stream / map, images/s per worker, and (main-process loading) images per CPU-second of the process
doing the work. On a shared machine read the ratio and the CPU-time rate: wall-clock rates there are
what a time-shared core did, while the CPU-time rate is one core's decode + augment rate on this
CPU, from which the workers a GPU needs follow: workers = (the GPU's images/s) / (images per
CPU-second), docs/streaming.md.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import machine_description  # noqa: E402


def write_shards(folder: Path, num_images: int, num_shards: int, size: tuple[int, int], seed: int = 0) -> int:
    """`num_images` JPEGs in `num_shards` parquet files; returns the mean JPEG size in bytes."""
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=1000)})
    total = 0
    folder.mkdir(parents=True, exist_ok=True)
    for shard, indices in enumerate(np.array_split(np.arange(num_images), num_shards)):
        images = []
        for _ in indices:
            base = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3)).astype(np.uint8)
            smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
            pixels = np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            images.append({"bytes": buffer.getvalue(), "path": None})
            total += len(images[-1]["bytes"])
        labels = rng.integers(0, 1000, len(indices)).tolist()
        Dataset.from_dict({"image": images, "label": labels}, features=features).to_parquet(
            str(folder / f"train-{shard:05d}-of-{num_shards:05d}.parquet")
        )
    return total // num_images


def _rates(loader, images: int) -> tuple[float, float]:
    """(images per second, images per CPU-second of this process) over `images` images after the first batch
    (worker start-up excluded). The second is one core's rate whatever else runs, when this process does the work."""
    iterator = iter(loader)
    next(iterator)
    start, cpu_start, read = time.perf_counter(), time.process_time(), 0
    while read < images:
        read += len(next(iterator)["pixel_values"])
    rates = read / (time.perf_counter() - start), read / (time.process_time() - cpu_start)
    del iterator  # stops the workers
    return rates


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=400, help="Images written into the shards.")
    parser.add_argument("--num_shards", type=int, default=4, help="Parquet files (of 100 images: one row group each, as on the Hub).")
    parser.add_argument("--source", type=int, nargs=2, default=(500, 375), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--images", type=int, default=480, help="Images timed per round and pipeline (more than one pass).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heavy", action="store_true", help="Add RandAugment rand-m9-mstd0.5-inc1 and random erasing 0.25.")
    parser.add_argument("--data_dir", type=Path, default=None, help="Where to write the shards (default: a temporary folder).")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import datasets.config
    from torch.utils.data import DataLoader, RandomSampler

    from mimir_hf.data import DataArguments, collate_images, load_image_dataset, with_transform

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data_dir or Path(scratch) / "shards"
        datasets.config.HF_DATASETS_CACHE = Path(scratch) / "hf_cache"  # the map-style conversion, thrown away after
        jpeg_bytes = write_shards(folder, args.num_images, args.num_shards, tuple(args.source))
        heavy = {"rand_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25} if args.heavy else {}
        data_args = DataArguments(dataset=str(folder), streaming=True, **heavy)
        transform = data_args.train_transform(args.image_size)
        indexed = with_transform(load_image_dataset(str(folder), "train"), transform)
        stream = data_args.training_dataset(data_args.training_stream(max_steps=1), args.image_size)

        def loaders(workers: int) -> dict:
            return {
                "map": DataLoader(indexed, batch_size=args.batch_size, sampler=RandomSampler(indexed, num_samples=10**6),
                                  collate_fn=collate_images, num_workers=workers),
                "stream": stream.loader(args.batch_size, collate_images, num_workers=workers),
            }

        rows = []
        for workers in args.workers:
            rates: dict[str, list[float]] = {"map": [], "stream": []}
            cpu_rates: dict[str, list[float]] = {"map": [], "stream": []}
            for _ in range(args.rounds):
                for name, loader in loaders(workers).items():
                    rate, cpu_rate = _rates(loader, args.images)
                    rates[name].append(rate)
                    cpu_rates[name].append(cpu_rate)
            medians = {name: statistics.median(values) for name, values in rates.items()}
            row = {
                "workers": workers,
                "map_images_per_s": round(medians["map"], 1),
                "stream_images_per_s": round(medians["stream"], 1),
                "stream_over_map": round(medians["stream"] / medians["map"], 3),
                "stream_images_per_s_per_worker": round(medians["stream"] / max(workers, 1), 1),
                "rounds": {name: [round(v, 1) for v in values] for name, values in rates.items()},
            }
            if workers == 0:  # the main process decodes: its CPU time is the pipeline's
                row.update({f"{name}_images_per_cpu_s": round(statistics.median(values), 1) for name, values in cpu_rates.items()})
            rows.append(row)
    result = {
        "machine": machine_description(),
        "setup": {"num_images": args.num_images, "num_shards": args.num_shards, "source": list(args.source),
                  "mean_jpeg_bytes": jpeg_bytes, "image_size": args.image_size, "batch_size": args.batch_size,
                  "images_timed": args.images, "rounds": args.rounds, "heavy": args.heavy},
        "results": rows,
    }
    print(result["machine"])
    print(f"{args.num_images} JPEGs {args.source[0]}x{args.source[1]} (mean {jpeg_bytes / 1024:.0f} KiB) in {args.num_shards} "
          f"parquet shards -> {args.image_size} px{' + RandAugment + erasing' if args.heavy else ''}, batch {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds of {args.images} images")
    print("| workers | map-style images/s | streamed images/s | stream / map | streamed images/s per worker |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['workers']} | {row['map_images_per_s']} | {row['stream_images_per_s']} | {row['stream_over_map']} | "
              f"{row['stream_images_per_s_per_worker']} |")
    for row in rows:
        if "stream_images_per_cpu_s" in row:
            print(f"one core (CPU time of the main process, workers 0): map-style {row['map_images_per_cpu_s']}, streamed "
                  f"{row['stream_images_per_cpu_s']} images per CPU-second")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
