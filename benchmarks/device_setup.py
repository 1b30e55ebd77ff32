"""What a GPU-machine run carries, and how it is unpacked there: wheels and packed image data.

Shared by `gpu_check.py` and `gpu_replication.py`. The GPU machine (docs/gpu.md) has torch, transformers,
accelerate, pyarrow, pandas, fsspec, huggingface-hub and pytest, but no package registry, and a run carries
at most 64 MiB: the tracked tree plus the git-ignored folders it names. So:

* missing pure-Python packages travel as wheels in `.device_wheels/`, downloaded here for the device's
  Python (3.12) and installed there with `pip install --no-index --no-deps` (the image's own packages are
  kept, whatever the wheels' pins say; `unmet_requirements` reports the pins that are not met);
* a wheel can be slimmed (`slim_wheel`): pyautoattack's is 42 MB only because it ships an example model
  (`pyautoattack/examples/model_test.pt`) that no run ever loads;
* image arrays travel packed (`pack_images`): CIFAR-10 in `np.savez_compressed` keeps 92 % of its raw
  size (zlib finds little to remove in natural images); predicting each pixel from its left, upper and
  upper-left neighbours after subtracting green from red and blue, then LZMA, keeps ~55 %, losslessly:
  25,000 CIFAR images fit in ~41 MiB instead of ~70. Decoding is two cumulative sums, so the device
  unpacks them in a second or two with numpy alone, and a SHA-256 of the pixels proves the round trip.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import lzma
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".device_wheels"
DEVICE_DATA = REPO / ".device_data"
# The device image's interpreter (docs/gpu.md): wheels are chosen for it, not for the Python running here.
DEVICE_PYTHON = "3.12"
CARRY_LIMIT_MIB = 64.0
PYAUTOATTACK = "pyautoattack==0.2.0"
# Files of a wheel that no run needs, by wheel name prefix (the example model alone is 44.8 MB).
WHEEL_DROPS = {"pyautoattack-": ("pyautoattack/examples/",)}
PACK_FORMAT = "rgb-gradient-lzma-1"


# ------------------------------------------------------------------ wheels


def download_wheels(requirements: Sequence[str], dest: Path = WHEELS) -> list[Path]:
    """`pip download` pure-Python wheels of `requirements` (pinned specs) for the device's Python into `dest`,
    without their dependencies (name every package the device lacks), then slim them."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", DEVICE_PYTHON,
               "--implementation", "cp", "--platform", "manylinux2014_x86_64", "--dest", str(dest), *requirements]
    print(" ".join(command), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(f"error: pip download failed (exit {result.returncode}); this step needs a package registry.")
    for wheel in sorted(dest.glob("*.whl")):
        if slim_wheel(wheel):
            print(f"slimmed {wheel.name}: {wheel.stat().st_size / 2**20:.2f} MiB", flush=True)
    return sorted(dest.glob("*.whl"))


def slim_wheel(path: Path, drop: Sequence[str] | None = None) -> bool:
    """Rewrite the wheel at `path` without the files under the `drop` prefixes (default: `WHEEL_DROPS`),
    their lines removed from RECORD so that pip still verifies every file that is left. False if nothing
    was dropped (already slim, or nothing to drop)."""
    if drop is None:
        drop = next((prefixes for name, prefixes in WHEEL_DROPS.items() if path.name.startswith(name)), ())
    if not drop:
        return False
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    kept = [(info, data) for info, data in entries if not info.filename.startswith(tuple(drop))]
    if len(kept) == len(entries):
        return False
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info, data in kept:
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode("utf-8").splitlines()
                data = ("\n".join(line for line in lines if not line.startswith(tuple(drop))) + "\n").encode("utf-8")
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    path.write_bytes(buffer.getvalue())
    return True


def install_missing(needed: Mapping[str, str], *, smoke: bool = False, wheels: Path = WHEELS, hint: str = "") -> dict:
    """Install, from `wheels` and without a registry, the packages whose module is missing here.

    `needed` maps an importable module to the pip spec of its distribution. `--no-deps`: every package
    the machine lacks must be listed, and the machine's own versions of the rest are kept. With `smoke`
    (a CPU rehearsal) nothing is installed, only reported.
    """
    missing = [module for module in needed if importlib.util.find_spec(module) is None]
    report: dict = {"missing_before": missing, "installed": [], "error": None}
    if not missing or smoke:
        return report
    if not wheels.is_dir():
        report["error"] = f"{wheels.name}/ not found: {hint or 'fill it here'} and carry it"
        return report
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir", "--find-links",
               str(wheels), *(needed[module] for module in missing)]
    result = subprocess.run(command, capture_output=True, text=True)
    importlib.invalidate_caches()
    if result.returncode != 0:
        report["error"] = result.stderr[-2000:]
    report["installed"] = [module for module in missing if importlib.util.find_spec(module) is not None]
    return report


def unmet_requirements(distribution: str) -> list[str]:
    """The declared requirements of an installed `distribution` that the installed packages do not meet
    (extras ignored): what a `--no-deps` install leaves unchecked, said before it can fail at run time."""
    return unmet(importlib.metadata.requires(distribution) or [], owner=distribution)


def unmet(requirements: Iterable[str], owner: str = "") -> list[str]:
    from packaging.requirements import Requirement

    problems = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            found = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{owner} needs {requirement}: not installed")
            continue
        if requirement.specifier and not requirement.specifier.contains(found, prereleases=True):
            problems.append(f"{owner} needs {requirement}: found {found}")
    return problems


def describe_machine(device) -> dict:
    """Interpreter, library versions and accelerator, for a run's report."""
    import platform

    import accelerate
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        info["gpu"] = None
    for name in ("datasets", "pyarrow", "fsspec", "huggingface_hub", "pyautoattack", "numpy"):
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    return info


# ------------------------------------------------------------------ packed images


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def pack_images(path: Path, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None,
                progress: bool = False) -> int:
    """Write uint8 N x H x W x 3 `images` and their labels to `path`, losslessly packed; returns the bytes written.
    LZMA at its strongest preset takes ~2 ms per CIFAR image: `progress` shows a bar."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"pack_images takes uint8 N x H x W x 3 images, got {images.dtype} {images.shape}.")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"pack_images takes one integer label per image, got {labels.dtype} {labels.shape}.")
    green = images[..., 1]
    # uint8 arithmetic wraps modulo 256, and every step here is linear modulo 256: exactly invertible.
    planes = np.stack([images[..., 0] - green, green, images[..., 2] - green])  # 3 x N x H x W
    residual = np.diff(planes, axis=3, prepend=np.zeros_like(planes[..., :1]))
    residual = np.diff(residual, axis=2, prepend=np.zeros_like(residual[:, :, :1]))
    raw = memoryview(residual.reshape(-1))
    compressor, parts, chunk = lzma.LZMACompressor(preset=9), [], 1 << 22
    from tqdm.auto import tqdm

    with tqdm(total=len(raw), unit="B", unit_scale=True, desc=f"packing {path.name}", disable=not progress) as bar:
        for start in range(0, len(raw), chunk):
            parts.append(compressor.compress(raw[start : start + chunk]))
            bar.update(len(raw[start : start + chunk]))
    payload = b"".join(parts) + compressor.flush()
    arrays = {
        "format": np.array(PACK_FORMAT),
        "shape": np.array(images.shape, dtype=np.int64),
        "payload": np.frombuffer(payload, dtype=np.uint8),
        "labels": labels.astype(np.int64),
        "sha256": np.array(_digest(images)),
    }
    if class_names is not None:
        arrays["class_names"] = np.array([str(name) for name in class_names])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file object: np.savez would append ".npz" to the name
        np.savez(handle, **arrays)
    return path.stat().st_size


def unpack_images(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """(images, labels, class names) from a `pack_images` file, checked against the SHA-256 taken when packing."""
    with np.load(path, allow_pickle=False) as archive:
        if "format" not in archive.files or str(archive["format"]) != PACK_FORMAT:
            raise ValueError(f"{path} is not a {PACK_FORMAT} image pack (made by pack_images).")
        shape = tuple(int(s) for s in archive["shape"])
        payload = archive["payload"].tobytes()
        labels = archive["labels"]
        digest = str(archive["sha256"])
        class_names = [str(name) for name in archive["class_names"]] if "class_names" in archive.files else None
    count, height, width, channels = shape
    residual = np.frombuffer(lzma.decompress(payload), dtype=np.uint8).reshape(channels, count, height, width)
    planes = np.cumsum(np.cumsum(residual, axis=2, dtype=np.uint8), axis=3, dtype=np.uint8)
    green = planes[1]
    images = np.stack([planes[0] + green, green, planes[2] + green], axis=-1)
    if _digest(images) != digest:
        raise ValueError(f"{path}: the unpacked pixels do not match the checksum taken when packing (a damaged file?).")
    return images, labels, class_names


# ------------------------------------------------------------------ what travels


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of the files a device run sends besides the carried folders: tracked, and untracked but not ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / name.decode()).stat().st_size for name in listed if name and (repo / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
