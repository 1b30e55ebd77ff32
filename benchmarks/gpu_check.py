"""The one prepared GPU check: install, run the `gpu` tests, measure, print JSON + a table.

    python benchmarks/gpu_check.py --download-wheels        # here, before asking for a device (fills .device_wheels/)
    python benchmarks/gpu_check.py --json $OUT/gpu_check.json   # on the GPU machine: <= ~8.5 minutes on an H200
    python benchmarks/gpu_check.py --smoke                  # CPU, tiny shapes, seconds (tests/test_gpu_check.py runs it)

On the GPU machine (torch + CUDA, transformers, accelerate, timm; no package registry):

1. installs what it lacks from `.device_wheels/` (carried with the tree; `benchmarks/device_setup.py`):
   `pyautoattack` for the AutoAttack timing (slimmed to ~0.1 MB) and `pytest` for the tests if absent;
   no step here needs `datasets` or `evaluate` (gpu_replication.py carries `datasets`);
2. runs the tests marked `gpu` (tests/test_gpu.py: placement, bf16 attacks, zero syncs under
   `torch.cuda.set_sync_debug_mode("error")`, torch.compile, both trainers in bf16);
3. measures, through `MimirTrainer.training_step` (the path users run, not a benchmark-only one),
   in bf16: the MIMIR/MAE step-cost ratio, images/s and peak GPU memory for the paper's CIFAR
   ViT-T (32 px, patch 2, batch 256 and 512) and ImageNet ViT-B (224 px, patch 16, batch 128);
   the MI penalty's share of the MIMIR step (float64 and float32); PGD-20 evaluation time against
   its floor, 20 × (forward + input backward); AutoAttack time per 1000 images on a ViT-T
   classifier (200 images, scaled; component by component, on the points still robust, as
   "standard" runs them);
   with time left, the MIMIR step under `torch.compile`.

Timings are medians of interleaved blocks (MAE and MIMIR alternate), with the device synchronised
around each block. Every section is skipped (and says so) once the time budget is spent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device_setup import PYAUTOATTACK, REPO, describe_machine, download_wheels, install_missing  # noqa: E402

# What a step here needs and the GPU machine may lack (module -> pip spec; installed with --no-deps: pytest's
# own dependencies, and pytest itself, are in the image, docs/gpu.md).
NEEDED = {"pyautoattack": PYAUTOATTACK, "pytest": "pytest"}

SHAPES = {
    # name: (size, image_size, patch_size, overrides)
    "cifar-vit-t": ("vit-t", 32, 2, {}),
    "imagenet-vit-b": ("vit-b", 224, 16, {}),
    "tiny": ("vit-t", 32, 4, {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                              "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                              "decoder_intermediate_size": 64}),
}
FULL_PLAN = {"steps": [("cifar-vit-t", 256), ("cifar-vit-t", 512), ("imagenet-vit-b", 128)], "pgd": ("cifar-vit-t", 256),
             "autoattack": ("cifar-vit-t", 200, ("apgd-ce", "apgd-t", "fab-t", "square")), "compile": ("cifar-vit-t", 256)}
SMOKE_PLAN = {"steps": [("tiny", 8)], "pgd": ("tiny", 8), "autoattack": ("tiny", 4, ("apgd-ce",)), "compile": None}


# ------------------------------------------------------------------ setup


def run_gpu_tests(timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(REPO / "tests" / "test_gpu.py")]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s", "seconds": timeout}
    tail = (result.stdout + result.stderr).strip().splitlines()
    return {"status": "passed" if result.returncode == 0 else f"failed (exit {result.returncode})",
            "summary": tail[-1] if tail else "", "seconds": time.perf_counter() - start,
            "output_tail": "\n".join(tail[-40:]) if result.returncode != 0 else ""}


# ------------------------------------------------------------------ timing


class Clock:
    def __init__(self, device) -> None:
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def block(self, fn: Callable[[], object], repeats: int) -> float:
        """Seconds per call of `fn`, over `repeats` back-to-back calls, the device synchronised around the block."""
        self.sync()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        self.sync()
        return (time.perf_counter() - start) / repeats


def peak_memory(device, fn: Callable[[], object]) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device) / 2**30


# ------------------------------------------------------------------ measurements


def pretraining_step_costs(shape: str, batch: int, device, bf16: bool, rounds: int, per_block: int,
                           compile_model: bool = False) -> dict:
    """MAE and MIMIR steps through `MimirTrainer.training_step` + AdamW, interleaved, on one model and batch."""
    import torch

    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments

    size, image_size, patch_size, overrides = SHAPES[shape]
    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config(size, image_size, patch_size, **overrides))
    with tempfile.TemporaryDirectory() as output_dir:
        args = MimirTrainingArguments(output_dir=output_dir, per_device_train_batch_size=batch, bf16=bf16,
                                      use_cpu=device.type == "cpu", report_to="none", disable_tqdm=True,
                                      save_strategy="no", torch_compile=compile_model)
        trainer = MimirTrainer(model=model, args=args)
    wrapped = trainer.accelerator.prepare(trainer.model)  # device placement, autocast (and compile) as in train()
    trainer.model_wrapped = wrapped
    trainer.current_gradient_accumulation_steps = 1  # set by train()'s loop in transformers >= 5.x
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05,
                                  fused=device.type == "cuda")
    pixels = torch.rand(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(1)).to(device)
    inputs = {"pixel_values": pixels}

    def step(kind: str) -> None:
        trainer.args.attack_steps = 1 if kind == "mimir" else 0
        model.config.mi_weight = 1e-5 if kind == "mimir" else 0.0
        trainer.training_step(wrapped, inputs)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    clock = Clock(device)
    warm_start = time.perf_counter()
    for _ in range(3):
        step("mae")
        step("mimir")
    clock.sync()
    warmup_s = time.perf_counter() - warm_start
    memory = {kind: peak_memory(device, lambda kind=kind: step(kind)) for kind in ("mae", "mimir")}
    times = {"mae": [], "mimir": []}
    for _ in range(rounds):
        for kind in ("mae", "mimir"):
            times[kind].append(clock.block(lambda kind=kind: step(kind), per_block))
    mae, mimir = statistics.median(times["mae"]), statistics.median(times["mimir"])
    result = {"shape": shape, "batch": batch, "bf16": bf16, "compiled": compile_model, "mae_ms": mae * 1e3,
              "mimir_ms": mimir * 1e3, "ratio": mimir / mae, "mimir_images_per_s": batch / mimir,
              "mae_images_per_s": batch / mae, "peak_gib": memory, "warmup_s": warmup_s}
    if not compile_model:
        result["mi_share"] = mi_share(model, pixels, mimir, clock)
    return result


def mi_share(model, pixels, mimir_step_s: float, clock: Clock) -> dict:
    """The MI penalty's forward + backward alone, on a latent of the step's shape, as a share of the MIMIR step."""
    import torch

    from mimir_hf.mutual_information import MutualInformationPenalty

    config = model.config
    num_patches = (config.image_size // config.patch_size) ** 2
    visible = int(num_patches * (1 - config.mask_ratio))
    latent = torch.randn(pixels.shape[0], 1 + visible, config.hidden_size, device=pixels.device, requires_grad=True)
    shares = {}
    for dtype in ("auto", "float64", "float32"):
        penalty = MutualInformationPenalty(compute_dtype=dtype)

        def once() -> None:
            (1e-5 * penalty(latent, pixels).value).backward()

        once()
        seconds = statistics.median(clock.block(once, 3) for _ in range(3))
        shares[dtype] = {"ms": seconds * 1e3, "share": seconds / mimir_step_s}
    return shares


def random_classifier(shape: str, device, num_labels: int = 10):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from mimir_hf.evaluation import LogitsModel
    from mimir_hf.modeling import encoder_kwargs

    size, image_size, patch_size, overrides = SHAPES[shape]
    kwargs = encoder_kwargs(size, image_size, patch_size)
    kwargs.update({k: v for k, v in overrides.items() if not k.startswith("decoder_")})
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(**kwargs, num_labels=num_labels)).eval()
    return LogitsModel(model).to(device), image_size


def pgd_cost(shape: str, batch: int, device, steps: int, rounds: int) -> dict:
    """PGD-k through `mimir_hf.evaluation` (fp32, as every evaluation) against k × (forward + input backward)."""
    import torch
    import torch.nn.functional as F

    from mimir_hf.evaluation import AttackSettings, build_attack

    model, image_size = random_classifier(shape, device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, image_size, image_size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    attack = build_attack(f"pgd-{steps}", AttackSettings())

    def floor() -> None:
        for _ in range(steps):
            z = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(z), y), [z])

    clock = Clock(device)
    attack.run(model, x, y)
    floor()
    ours, bare = [], []
    for _ in range(rounds):
        ours.append(clock.block(lambda: attack.run(model, x, y), 1))
        bare.append(clock.block(floor, 1))
    return {"shape": shape, "batch": batch, "steps": steps, "pgd_ms": statistics.median(ours) * 1e3,
            "floor_ms": statistics.median(bare) * 1e3, "ratio": statistics.median(ours) / statistics.median(bare),
            "images_per_s": batch / statistics.median(ours)}


def autoattack_cost(shape: str, num_images: int, device, components: tuple[str, ...], deadline: float) -> dict:
    """AutoAttack's components, each on the points still robust (as "standard" runs them), timed, scaled to 1000 images.

    Labels are the model's own predictions, so every image is attacked (clean accuracy 100 %). A
    random-weight ViT is nearly constant in its input and nothing breaks it: every component
    then runs on every image, which makes this the *upper* end of AutoAttack's cost (a trained
    model loses points to APGD-CE and the later components run on fewer). A component is only
    started before `deadline`; the ones left out are listed.
    """
    import torch

    from mimir_hf.evaluation import AttackSettings, build_attack

    if importlib.util.find_spec("pyautoattack") is None:
        return {"status": "skipped: pyautoattack not installed"}
    model, image_size = random_classifier(shape, device)
    x = torch.rand(num_images, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        y = model(x).argmax(1)
    robust = torch.ones(num_images, dtype=torch.bool, device=device)
    clock = Clock(device)
    timings, skipped = {}, []
    for component in components:
        if time.perf_counter() > deadline:
            skipped.append(component)
            continue
        index = robust.nonzero().flatten()
        if index.numel() == 0:
            timings[component] = 0.0
            continue
        attack = build_attack("autoattack", AttackSettings(autoattack_version="custom", autoattack_attacks=(component,)))
        holder: dict = {}
        timings[component] = clock.block(lambda: holder.update(adversarial=attack.run(model, x[index], y[index])), 1)
        with torch.no_grad():
            robust[index] = model(holder["adversarial"]).argmax(1) == y[index]
    seconds = sum(timings.values())
    return {"shape": shape, "images": num_images, "components_s": timings, "skipped": skipped, "seconds": seconds,
            "seconds_per_1000": seconds * 1000 / num_images, "robust_accuracy": robust.float().mean().item(),
            "note": "labels = the model's predictions, random weights (nothing broken: upper end of the cost)"
            + (f"; not run (time): {', '.join(skipped)}" if skipped else "")}


# ------------------------------------------------------------------ report


def markdown(results: dict) -> str:
    lines = [f"GPU check: {results['environment'].get('gpu') or 'CPU (smoke)'} | torch {results['environment']['torch']} "
             f"| transformers {results['environment']['transformers']} | accelerate {results['environment']['accelerate']}", ""]
    lines += ["| model, batch | bf16 | compiled | MAE step | MIMIR step | MIMIR/MAE (≤ 1.75) | MIMIR images/s | "
              "peak GiB MAE / MIMIR | MI share auto / fp64 / fp32 (≤ 3 %) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["steps"]:
        if "status" in r:
            lines.append(f"| {r.get('shape')}, {r.get('batch')} | | | {r['status']} | | | | | |")
            continue
        peak = r["peak_gib"]
        peak_text = "n/a" if peak["mae"] is None else f"{peak['mae']:.2f} / {peak['mimir']:.2f}"
        share = r.get("mi_share")
        share_text = " / ".join(f"{100 * share[d]['share']:.2f} %" for d in ("auto", "float64", "float32")) if share else "-"
        lines.append(f"| {r['shape']}, {r['batch']} | {r['bf16']} | {r['compiled']} | {r['mae_ms']:.1f} ms | {r['mimir_ms']:.1f} ms | "
                     f"**{r['ratio']:.2f}** | {r['mimir_images_per_s']:.0f} | {peak_text} | {share_text} |")
    pgd = results.get("pgd", {})
    if "ratio" in pgd:
        lines += ["", f"PGD-{pgd['steps']} ({pgd['shape']}, batch {pgd['batch']}, fp32): {pgd['pgd_ms']:.1f} ms vs floor "
                  f"{pgd['floor_ms']:.1f} ms = **{pgd['ratio']:.3f}** (≤ 1.1); {pgd['images_per_s']:.0f} images/s"]
    auto = results.get("autoattack", {})
    if "seconds_per_1000" in auto:
        parts = ", ".join(f"{name} {sec:.1f} s" for name, sec in auto["components_s"].items())
        lines.append(f"AutoAttack ({auto['shape']}, {auto['images']} images; {parts}): {auto['seconds']:.1f} s = "
                     f"**{auto['seconds_per_1000']:.1f} s per 1000 images** ({auto['note']})")
    elif auto:
        lines.append(f"AutoAttack: {auto.get('status')}")
    tests = results.get("gpu_tests", {})
    lines.append(f"gpu tests: {tests.get('status', 'not run')} {tests.get('summary', '')}".rstrip())
    lines.append(f"total {results['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, seconds (runs inside the test suite)")
    parser.add_argument("--download-wheels", action="store_true", help="fill .device_wheels/ (needs a package registry)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--budget_s", type=float, default=480.0, help="skip remaining sections past this many seconds")
    parser.add_argument("--skip_tests", action="store_true", help="do not run the gpu tests")
    args = parser.parse_args(argv)
    if args.download_wheels:
        download_wheels(list(NEEDED.values()))
        return {}

    start = time.perf_counter()
    installed = install_missing(NEEDED, smoke=args.smoke, hint="run `python benchmarks/gpu_check.py --download-wheels` here")
    sys.path.insert(0, str(REPO / "src"))
    import torch

    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --smoke on a CPU machine")
    if args.smoke:
        torch.set_num_threads(1)
    device = torch.device("cpu" if args.smoke else "cuda")
    plan = SMOKE_PLAN if args.smoke else FULL_PLAN
    rounds, per_block = (2, 1) if args.smoke else (5, 5)

    def over_budget() -> bool:
        return time.perf_counter() - start > args.budget_s

    results: dict = {"mode": "smoke" if args.smoke else "gpu", "environment": describe_machine(device), "install": installed}
    print(json.dumps({"environment": results["environment"], "install": installed}), flush=True)
    if not (args.smoke or args.skip_tests):
        results["gpu_tests"] = run_gpu_tests(timeout=240.0)
        print("gpu tests:", results["gpu_tests"]["status"], results["gpu_tests"].get("summary", ""), flush=True)

    results["steps"] = []
    for shape, batch in plan["steps"]:
        if over_budget():
            results["steps"].append({"shape": shape, "batch": batch, "status": "skipped: time budget"})
            continue
        try:
            r = pretraining_step_costs(shape, batch, device, bf16=True, rounds=rounds, per_block=per_block)
        except torch.cuda.OutOfMemoryError as error:  # report, and go on with the next shape
            r = {"shape": shape, "batch": batch, "status": f"out of memory: {str(error)[:200]}"}
            torch.cuda.empty_cache()
        results["steps"].append(r)
        print(json.dumps(r), flush=True)
    shape, batch = plan["pgd"]
    results["pgd"] = {"status": "skipped: time budget"} if over_budget() else pgd_cost(
        shape, batch, device, steps=2 if args.smoke else 20, rounds=rounds)
    print(json.dumps({"pgd": results["pgd"]}), flush=True)
    shape, images, components = plan["autoattack"]
    results["autoattack"] = autoattack_cost(shape, images, device, components, deadline=start + args.budget_s - 60)
    print(json.dumps({"autoattack": results["autoattack"]}), flush=True)
    if plan["compile"] is not None:
        shape, batch = plan["compile"]
        if time.perf_counter() - start < args.budget_s - 150:  # optional: only with time to spare
            try:
                r = pretraining_step_costs(shape, batch, device, bf16=True, rounds=rounds, per_block=per_block, compile_model=True)
            except Exception as error:  # noqa: BLE001 - an optional measurement: report why it failed
                r = {"shape": shape, "batch": batch, "status": f"compile failed: {type(error).__name__}: {str(error)[:300]}"}
        else:
            r = {"shape": shape, "batch": batch, "status": "compiled step skipped: time budget"}
        results["steps"].append(r)
        print(json.dumps(r), flush=True)
    results["seconds"] = time.perf_counter() - start
    table = markdown(results)
    results["markdown"] = table
    print("\n" + json.dumps({k: v for k, v in results.items() if k != "markdown"}, indent=1, default=str))
    print("\n" + table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
