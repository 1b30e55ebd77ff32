"""Numerical equivalence of the reference-checkpoint conversions against timm (the source architecture).

    python -m venv ../timm-venv && ../timm-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==0.9.7
    ../timm-venv/bin/pip install --no-deps -e . && ../timm-venv/bin/pip install transformers accelerate pyyaml
    OMP_NUM_THREADS=1 ../timm-venv/bin/python benchmarks/verify_conversions.py

timm needs torchvision, which does not install beside the CPU torch of the main environment, so this
runs in its own environment. It builds each source network in timm with perturbed weights, converts
its state dict in the reference's key layout with `mimir_hf.convert`, runs both on the same images
and prints the largest absolute output difference. Exit status 1 if any exceeds the tolerance of
tests/test_convert_timm.py (the same comparisons, as pytest tests).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    try:
        import timm
        import torch
    except ImportError as error:
        print(f"timm is not importable here ({error}); see this script's docstring for the environment it needs.")
        return 2
    import test_convert_timm as checks

    torch.manual_seed(0)
    torch.set_num_threads(1)
    rows: list[tuple[str, str, float]] = []
    for pooling in ("mean", "cls"):
        target = "BeitForImageClassification" if pooling == "mean" else "ViTForImageClassification"
        rows.append((f"timm ViT classifier, {pooling} pooling", f"{target} logits", checks.compare_vit_classifier(pooling)))
    for ratio in (0.0, 0.75):
        latent, prediction = checks.compare_mae(ratio)
        rows.append((f"reference MAE (timm blocks), mask {ratio}", "MimirForPreTraining latent", latent))
        rows.append((f"reference MAE (timm blocks), mask {ratio}", "MimirForPreTraining reconstruction", prediction))
    for layout in ("timm", "original"):
        rows.append((f"Swin, {layout} layout, window 7 @112 px", "SwinForImageClassification logits", checks.compare_swin(layout)))
    rows.append(("Swin, original layout, window 14 @224 px", "SwinForImageClassification logits", checks.compare_swin("original", 224, 14)))

    print(f"timm {timm.__version__}, torch {torch.__version__}; tolerance {checks.TOLERANCE:.0e}\n")
    print(f"| {'source':45} | {'converted output':36} | max abs difference |")
    print(f"|{'-' * 47}|{'-' * 38}|--------------------|")
    for source, target, difference in rows:
        print(f"| {source:45} | {target:36} | {difference:18.2e} |")
    failed = [row for row in rows if not row[2] < checks.TOLERANCE]
    if failed:
        print(f"\n{len(failed)} comparison(s) above tolerance.")
        return 1
    print("\nAll conversions agree with their source architecture.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
