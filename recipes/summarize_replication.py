"""The tables of a replication write-up beyond one run's paired statistics (`mimir_hf.replication.summary`).

    python recipes/summarize_replication.py --summary recipes/configs/replicate_cpu_v3_summary.yaml

The summary file names evaluation folders (committed ones under docs/results/ or a run's) and asks for:
- `comparisons`: paired statistics of several models on the same images (as recipes/compare.py), e.g. a
  run's ablation arms against an earlier run's arms;
- `seeds`: first − second at each seed, and the mean over the seeds;
- `worst_case`: one model's evaluations joined per image (e.g. AutoAttack and the adaptive attacks on the
  same images), the worst case over all of them, and pairs of models compared on it.
It writes summary.json and summary.md (and one folder per comparison) to the file's `output_dir`.
Tables whose folders do not exist yet are listed as not available.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.replication.summary import format_summary_markdown, summarize


@dataclass
class SummaryArguments:
    summary: str = field(metadata={"help": "A YAML file: output_dir, bootstrap_samples, bootstrap_seed, comparisons, seeds, worst_case."})
    output_dir: str | None = field(default=None, metadata={"help": "Overrides the file's output_dir."})


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_recipe_args((SummaryArguments,), argv)
    path = Path(args.summary)
    if not path.is_file():
        raise FileNotFoundError(f"the summary file {str(path)!r} does not exist.")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if args.output_dir is not None:
        config["output_dir"] = args.output_dir
    if "output_dir" not in config:
        raise ValueError(f"{path}: output_dir is required.")
    summary = summarize(config, progress=True)
    output_dir = Path(config["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "summary.json").write_text(json.dumps({"summary_file": str(path), **summary}, indent=2) + "\n", encoding="utf-8")
    markdown = format_summary_markdown(summary)
    (output_dir / "summary.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"Summary written to {output_dir / 'summary.json'} and {output_dir / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recipe(main))
