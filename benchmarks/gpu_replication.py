"""The paper's three-arm CIFAR-10 comparison on one GPU in at most 9 minutes.

    python benchmarks/gpu_replication.py --prepare --data_dir data/cifar10   # here (registry): data subset + wheels, sizes
    python benchmarks/gpu_replication.py --smoke                             # CPU: tiny model, synthetic data, the whole chain
    python benchmarks/gpu_replication.py                                     # on the GPU machine: results into $OUT

The exact call on the GPU machine, after `--prepare` here:

    run(command="PYTHONUNBUFFERED=1 python benchmarks/gpu_replication.py", carry=[".device_wheels", ".device_data"], timeout_s=570)

It runs `recipes/replicate_cifar10.py --config_dir recipes/configs/replicate_gpu --jobs 4`: MAE and MIMIR
pretraining, FGSM-RS adversarial finetuning of the three arms (scratch, MAE, MIMIR) and their evaluations
(clean + PGD-20 on 5,000 test images; AutoAttack APGD-CE + APGD-T on the first 1,000), with the paper's
ViT-T at patch 4, in bf16, four stages at a time on the one GPU. The estimate, ~5 minutes (3.3 if the
stages' GPU work overlaps fully, 6.4 if it does not overlap at all), and its arithmetic are in
docs/replication.md ("GPU replication").

The device run:

1. installs what the machine lacks (`datasets`, `dill`, `multiprocess`, `pyautoattack`) from the wheels
   in `.device_wheels/` (`--no-deps`: the image's pyarrow, fsspec, huggingface-hub are kept) and reports
   any of `datasets`' version pins that the image does not meet;
2. unpacks the data subset carried in `.device_data/` (losslessly packed, checksummed) into the work folder;
3. runs the driver under a wall-clock guard: no stage starts after `--budget_s` minus 100 s, and running
   stages are stopped at `--budget_s` minus 40 s, so that the results of the finished stages are always
   written (the unfinished ones are listed, and the exit status is 4);
4. writes to `--output_dir` ($OUT on the device): results.json, results.md, results.png and stages.json as
   the driver wrote them, replication.log (everything printed), environment.json (machine, versions,
   install, timings) and replication-files.tar.gz (the driver's whole output layout without model weights:
   every stage's configs, logs, robustness.json and per_sample.npz, for `recipes/compare.py`). Seven files,
   because a device run returns at most eight.

`--smoke` runs the same code path on the CPU with a tiny model and a synthetic data set (packed and
unpacked like the real one), two training steps per stage and 16 test images: it checks the chain
end to end (tests/test_gpu_replication.py), not the GPU configs' cost.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device_setup import (  # noqa: E402 (a script's sibling module)
    CARRY_LIMIT_MIB,
    DEVICE_DATA,
    PYAUTOATTACK,
    REPO,
    WHEELS,
    describe_machine,
    download_wheels,
    folder_bytes,
    install_missing,
    pack_images,
    slim_wheel,
    tree_bytes,
    unmet_requirements,
    unpack_images,
)

CONFIG_DIR = REPO / "recipes" / "configs" / "replicate_gpu"
DRIVER = REPO / "recipes" / "replicate_cifar10.py"
SUBSET = DEVICE_DATA / "cifar10-subset"
SPLITS = ("train", "test")
# What the GPU machine lacks for this run (module -> pinned wheel). datasets 5.2.0 is the version the code is
# tested with here; its pins the image meets as far as known: huggingface-hub 1.33 (>= 1.31, < 3), tqdm,
# pandas, xxhash, filelock, pyyaml, packaging; unknown until the first run reports them: pyarrow (>= 24) and
# fsspec (<= 2026.9.0). dill and multiprocess are imported by datasets and absent from the image.
NEEDED = {"datasets": "datasets==5.2.0", "dill": "dill==0.4.1", "multiprocess": "multiprocess==0.70.19",
          "pyautoattack": PYAUTOATTACK}
TRAIN_IMAGES, TEST_IMAGES = 20_000, 5_000
JOBS = 4
BUDGET_S = 540.0  # 9 minutes for the whole command
RESULTS_RESERVE_S = 40.0  # after the stages are stopped: results, paired statistics, archive
LAUNCH_MARGIN_S = 60.0  # no stage starts in the last minute before the stop: it could not finish
DEVICE_TIMEOUT_S = 570  # the run(...) call's timeout_s: past BUDGET_S, so the guard acts first
RESULT_FILES = ("results.json", "results.md", "results.png", "stages.json")
ARCHIVE = "replication-files.tar.gz"

_TINY = ("--hidden_size 32 --num_hidden_layers 1 --num_attention_heads 2 --per_device_train_batch_size 16 "
         "--validation_split_size 16 --dataloader_num_workers 0 --dataloader_persistent_workers false --logging_steps 1 "
         "--use_cpu true")  # bf16 on a CPU needs use_cpu
# --smoke: the GPU configs with a tiny model, 2 steps per training stage and 16 test images (seconds per stage).
SMOKE_DRIVER_ARGS = [
    "--max_steps", "2", "--jobs", "2", "--bootstrap_samples", "200", "--progress_every", "5",
    "--pretrain_args", f"{_TINY} --num_preview_images 0",
    "--finetune_args", f"{_TINY} --per_device_eval_batch_size 16 --eval_attack_steps 2",
    "--eval_args", "--max_eval_samples 16 --batch_size 16 --no_progress true",
]
SMOKE_TRAIN_IMAGES, SMOKE_TEST_IMAGES = 64, 32


# ------------------------------------------------------------------ here: --prepare


def first_images(data_dir: Path, split: str, count: int) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """The first `count` images of a split of the CIFAR-10 .npz copy, files in their natural order."""
    from mimir_hf.data.npz import resolve_npz_files

    images, labels, names = [], [], None
    held = 0
    for path in resolve_npz_files(str(data_dir), split):
        if held >= count:
            break
        with np.load(path, allow_pickle=False) as archive:
            take = count - held
            images.append(archive["images"][:take])
            labels.append(archive["labels"][:take])
            names = names or ([str(n) for n in archive["class_names"]] if "class_names" in archive.files else None)
        held += len(images[-1])
    if held < count:
        raise SystemExit(f"error: {data_dir} holds {held} {split} images, fewer than the {count} asked for.")
    return np.concatenate(images), np.concatenate(labels), names


def prepare_data(data_dir: Path, dest: Path, train_images: int, test_images: int) -> dict[str, int]:
    """Pack the first `train_images` training and `test_images` test images into `dest`, checked by unpacking."""
    sizes = {}
    for split, count in zip(SPLITS, (train_images, test_images)):
        images, labels, names = first_images(data_dir, split, count)
        path = dest / f"{split}.pack"
        start = time.perf_counter()
        sizes[split] = pack_images(path, images, labels, names, progress=True)
        unpacked, unpacked_labels, _ = unpack_images(path)  # checks the pixels' SHA-256 too
        if not (np.array_equal(unpacked, images) and np.array_equal(unpacked_labels, labels)):
            raise SystemExit(f"error: {path} does not unpack to the images it was made from.")
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {count} images, "
              f"{sizes[split] / 2**20:.1f} MiB ({sizes[split] / images.nbytes:.0%} of the raw pixels), "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    return sizes


def prepare(args: argparse.Namespace) -> int:
    if args.data_dir is None:
        raise SystemExit("error: --prepare needs --data_dir: CIFAR-10 as train_batch_1..5.npz + test.npz.")
    prepare_data(Path(args.data_dir), SUBSET, args.train_images, args.test_images)
    if not args.skip_wheels:
        wanted = [spec for spec in NEEDED.values() if not any(WHEELS.glob(spec.replace("==", "-") + "-*.whl"))]
        if wanted:
            download_wheels(wanted)
        for wheel in sorted(WHEELS.glob("*.whl")):
            if slim_wheel(wheel):
                print(f"slimmed {wheel.name}", flush=True)
    sizes = {"data": folder_bytes(DEVICE_DATA), "wheels": folder_bytes(WHEELS), "tree": tree_bytes()}
    total = sum(sizes.values()) / 2**20
    print(f"What a device run carries: data {sizes['data'] / 2**20:.1f} MiB ({DEVICE_DATA.name}/), wheels "
          f"{sizes['wheels'] / 2**20:.1f} MiB ({WHEELS.name}/), tracked + untracked tree {sizes['tree'] / 2**20:.1f} MiB: "
          f"{total:.1f} MiB of the {CARRY_LIMIT_MIB:.0f} MiB limit", flush=True)
    for wheel in sorted(WHEELS.glob("*.whl")):
        print(f"  {wheel.name}: {wheel.stat().st_size / 2**20:.2f} MiB")
    if total > CARRY_LIMIT_MIB:
        raise SystemExit(f"error: {total:.1f} MiB would not travel (limit {CARRY_LIMIT_MIB:.0f} MiB): pass smaller "
                         "--train_images / --test_images, or empty .device_wheels/ of what this run does not need.")
    print("\nOn the device:\n" + device_call())
    return 0


def device_call() -> str:
    return (f'run(command="PYTHONUNBUFFERED=1 python benchmarks/gpu_replication.py", '
            f'carry=["{WHEELS.name}", "{DEVICE_DATA.name}"], timeout_s={DEVICE_TIMEOUT_S})')


# ------------------------------------------------------------------ there: the run


def synthetic_packs(dest: Path) -> None:
    """A tiny random data set in the carried format (so --smoke unpacks it like the real one)."""
    rng = np.random.default_rng(0)
    for split, count in zip(SPLITS, (SMOKE_TRAIN_IMAGES, SMOKE_TEST_IMAGES)):
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        pack_images(dest / f"{split}.pack", images, np.arange(count) % 10, [f"class {i}" for i in range(10)])


def unpack_data(packs: Path, data_dir: Path) -> dict:
    """`<split>.pack` -> `<split>.npz` in the layout the .npz loader reads; returns counts and timings."""
    data_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    counts = {}
    for split in SPLITS:
        path = packs / f"{split}.pack"
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: run `python benchmarks/gpu_replication.py --prepare --data_dir "
                             f"<CIFAR-10 folder>` on a machine with the data, and carry {DEVICE_DATA.name}/.")
        images, labels, names = unpack_images(path)
        arrays = {"images": images, "labels": labels, **({"class_names": np.array(names)} if names else {})}
        np.savez(data_dir / f"{split}.npz", **arrays)
        counts[split] = len(images)
    return {"images": counts, "seconds": round(time.perf_counter() - start, 1)}


def run_driver(command: list[str], log_path: Path) -> int:
    """Run the driver with `src/` importable, its output shown live and kept in `log_path`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p))
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the device reaches no network:
        env.setdefault(name, "1")  # fail at once rather than after connection time-outs
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1)
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            log.flush()
        return process.wait()


def collect(run_dir: Path, archive_dir: Path, output_dir: Path) -> list[str]:
    """Copy the driver's result files to `output_dir`, and pack the small files the driver archived
    (`--archive_dir`: its layout without weights, checkpoints or attack states) into one tarball."""
    written = []
    for name in RESULT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, output_dir / name)
            written.append(name)
    with tarfile.open(output_dir / ARCHIVE, "w:gz") as archive:
        if archive_dir.is_dir():
            archive.add(archive_dir, arcname=run_dir.name)
    written.append(ARCHIVE)
    return written


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    output_dir = Path(args.output_dir or os.environ.get("OUT") or REPO / "outputs" / "gpu-replication" / "results")
    work_dir = Path(args.work_dir) if args.work_dir else None
    temporary = None
    if work_dir is None:
        if args.smoke:
            temporary = tempfile.TemporaryDirectory(prefix="gpu-replication-smoke-")
            work_dir = Path(temporary.name)
        else:
            work_dir = REPO / "outputs" / "gpu-replication"
    run_dir = work_dir / "run"
    resuming = "--skip_existing" in args.driver_args
    if run_dir.exists() and any(run_dir.iterdir()) and not resuming:
        raise SystemExit(f"error: {run_dir} holds an earlier run: pass `-- --skip_existing` to resume it, or remove it.")
    output_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"mode": "smoke" if args.smoke else "gpu", "budget_s": args.budget_s, "work_dir": str(work_dir)}

    def save_report() -> None:
        report["seconds_total"] = round(time.perf_counter() - start, 1)
        (output_dir / "environment.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")

    print(f"[setup] installing what is missing from {WHEELS.name}/", flush=True)
    report["install"] = install_missing(NEEDED, smoke=args.smoke,
                                        hint="run `python benchmarks/gpu_replication.py --prepare --data_dir ...` here")
    if report["install"]["error"]:
        save_report()
        raise SystemExit(f"error: installing {report['install']['missing_before']} failed: {report['install']['error']}")
    if importlib.util.find_spec("datasets") is None:
        save_report()
        raise SystemExit("error: `datasets` is not importable after the install; see environment.json.")
    report["unmet_requirements"] = unmet_requirements("datasets")
    for problem in report["unmet_requirements"]:
        print(f"[setup] warning: {problem} (installed with --no-deps; the run goes on)", flush=True)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device: run with --smoke on a CPU machine.")
    report["environment"] = describe_machine(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"[setup] {json.dumps(report['environment'])}", flush=True)

    packs = SUBSET
    if args.smoke:
        packs = work_dir / "packed"
        synthetic_packs(packs)
    report["data"] = unpack_data(packs, work_dir / "data")
    print(f"[setup] data unpacked: {report['data']}", flush=True)

    # The guard: stop the stages in time to write the results inside the budget.
    left = args.budget_s - (time.perf_counter() - start)
    time_limit = left - RESULTS_RESERVE_S
    if time_limit < 2 * LAUNCH_MARGIN_S:
        raise SystemExit(f"error: only {left:.0f} s of the {args.budget_s:.0f} s budget left after the setup.")
    command = [sys.executable, str(DRIVER), "--config_dir", str(CONFIG_DIR), "--data_dir", str(work_dir / "data"),
               "--output_dir", str(run_dir), "--archive_dir", str(work_dir / "archive"), "--jobs", str(JOBS), "--progress_every", "30",
               "--time_limit", f"{time_limit:.0f}", "--launch_limit", f"{time_limit - LAUNCH_MARGIN_S:.0f}",
               *(SMOKE_DRIVER_ARGS if args.smoke else []), *args.driver_args]
    report["driver_command"] = shlex.join(command)
    report["seconds_setup"] = round(time.perf_counter() - start, 1)
    save_report()
    print(f"[setup] done in {report['seconds_setup']:.0f} s; the stages get {time_limit:.0f} s "
          f"(none starts after {time_limit - LAUNCH_MARGIN_S:.0f} s)", flush=True)
    driver_start = time.perf_counter()
    report["driver_returncode"] = run_driver(command, output_dir / "replication.log")
    report["seconds_driver"] = round(time.perf_counter() - driver_start, 1)
    report["files"] = collect(run_dir, work_dir / "archive", output_dir) + ["replication.log", "environment.json"]
    save_report()
    print(f"\nGPU replication: {report['seconds_total']:.0f} s of the {args.budget_s:.0f} s budget (setup "
          f"{report['seconds_setup']:.0f} s, stages and results {report['seconds_driver']:.0f} s); driver exit status "
          f"{report['driver_returncode']}; written to {output_dir}: {', '.join(report['files'])}", flush=True)
    if temporary is not None:
        temporary.cleanup()
    return report["driver_returncode"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Options after `--` go to recipes/replicate_cifar10.py, e.g. -- --arms a,c")
    parser.add_argument("--prepare", action="store_true", help="Here: pack the data subset and fill .device_wheels/.")
    parser.add_argument("--data_dir", default=None, help="With --prepare: CIFAR-10 as train_batch_1..5.npz + test.npz.")
    parser.add_argument("--train_images", type=int, default=TRAIN_IMAGES, help="With --prepare: the first N training images.")
    parser.add_argument("--test_images", type=int, default=TEST_IMAGES, help="With --prepare: the first N test images.")
    parser.add_argument("--skip_wheels", action="store_true", help="With --prepare: pack the data only (no registry needed).")
    parser.add_argument("--smoke", action="store_true", help="CPU rehearsal: tiny model, synthetic data, the whole chain.")
    parser.add_argument("--output_dir", default=None, help="Where the results go (default: $OUT, else outputs/gpu-replication/results).")
    parser.add_argument("--work_dir", default=None,
                        help="Data and the driver's full output (default: outputs/gpu-replication; --smoke: a temporary folder).")
    parser.add_argument("--budget_s", type=float, default=BUDGET_S,
                        help="Wall-clock seconds for the whole command; the stages are stopped in time to write the results.")
    argv = sys.argv[1:] if argv is None else list(argv)
    driver_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.driver_args = driver_args
    if args.train_images < 1 or args.test_images < 1:
        parser.error("--train_images and --test_images must be >= 1.")
    sys.path.insert(0, str(REPO / "src"))  # the repository's own library; the GPU machine has no install of it
    if args.prepare:
        return prepare(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
