"""Paired statistics of two or more models evaluated on the same images.

    python recipes/compare.py --evaluations outputs/eval-scratch outputs/eval-mimir
    python recipes/compare.py --evaluations eval-a eval-b eval-c --names scratch mae mimir \
        --output_dir outputs/comparison --bootstrap_samples 10000 --seed 0

Each folder is one written by recipes/evaluate.py (robustness.json + per_sample.npz); folders of
different images, or evaluated under another threat model (norm or ε), are refused. Per attack, for the per-sample worst case and for (clean + AutoAttack) / 2
it prints each model's accuracy with a bootstrap interval and, for every pair, the paired bootstrap
interval of the difference and the exact McNemar p-value; comparison.json, comparison.md,
comparison.png and recipe_config.yaml go to --output_dir. Every option of ComparisonArguments is
accepted (`--help` lists them), from the command line or a YAML file given with --config.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mimir_hf.artefacts import COMPARISON_FILES
from mimir_hf.cli import parse_recipe_args, run_recipe, save_recipe_config
from mimir_hf.evaluation import ComparisonArguments, compare_evaluations


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_recipe_args((ComparisonArguments,), argv)
    comparison = compare_evaluations(
        args.evaluations,
        names=args.names,
        attacks=args.attacks,
        robust_attack=args.robust_attack,
        bootstrap_samples=args.bootstrap_samples,
        confidence=args.confidence,
        seed=args.seed,
        output_dir=args.output_dir,
        progress=not args.no_progress,
    )
    save_recipe_config(args.output_dir, args)
    print(comparison.format_markdown())
    output_dir = Path(args.output_dir)
    written = [str(output_dir / name) for name in COMPARISON_FILES.values() if (output_dir / name).is_file()]
    print(f"Comparison written to {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recipe(main))
