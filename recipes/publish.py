"""Publish a MIMIR checkpoint to the Hugging Face Hub: card from the recorded run, one commit.

    python recipes/publish.py --checkpoint outputs/quickstart-finetune \\
        --report outputs/quickstart-eval/robustness.json --repo_id <org>/mimir-vit-t-digits --dry_run
    python recipes/publish.py --checkpoint outputs/quickstart-finetune \\
        --report outputs/quickstart-eval/robustness.json --repo_id <org>/mimir-vit-t-digits \\
        --base_model <org>/mimir-vit-t-digits-pretrain
    python recipes/publish.py --kind pretraining --checkpoint outputs/quickstart-pretrain \\
        --repo_id <org>/mimir-vit-t-digits-pretrain

`--dry_run` writes the card (default `<checkpoint>/README.md`) and pushes nothing. The token comes
from `HF_TOKEN` or `hf auth login`, never from the command line; `HF_ENDPOINT` selects another Hub.
Options can also come from `--config file.yaml`. A refusal or user error prints one line and exits
with status 2 (`--debug` or MIMIR_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mimir_hf.cli import parse_recipe_args, run_recipe


@dataclass
class PublishArguments:
    checkpoint: str = field(
        default="outputs/quickstart-finetune", metadata={"help": "The save_pretrained directory to publish."}
    )
    repo_id: str | None = field(
        default=None, metadata={"help": "Hub repo '<namespace>/<name>' (created if missing). Required unless --dry_run."}
    )
    kind: str = field(
        default="classifier",
        metadata={"help": "What the checkpoint is.", "choices": ["classifier", "pretraining"]},
    )
    report: str | None = field(
        default=None,
        metadata={"help": "robustness.json of the evaluation (default <checkpoint>/robustness.json); required for a classifier."},
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id of the pretraining checkpoint a classifier was finetuned from."}
    )
    dataset_id: str | None = field(default=None, metadata={"help": "Hub dataset id for the card's `datasets` metadata."})
    license: str = field(default="apache-2.0", metadata={"help": "License id for the card metadata."})
    private: bool = field(default=False, metadata={"help": "Create the repo as private."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message."})
    template: str | None = field(default=None, metadata={"help": "A Jinja card template to use instead of the packaged one."})
    dry_run: bool = field(default=False, metadata={"help": "Write the card locally and push nothing."})
    card_path: str | None = field(default=None, metadata={"help": "Where --dry_run writes the card (default <checkpoint>/README.md)."})


def main(argv: list[str] | None = None):
    (args,) = parse_recipe_args((PublishArguments,), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mimir_hf.hub import publish_checkpoint

    if args.repo_id is None and not args.dry_run:
        raise ValueError("--repo_id is required (or pass --dry_run to only write the card).")
    repo_id = args.repo_id or f"your-org/{Path(args.checkpoint).resolve().name}"
    result = publish_checkpoint(
        args.checkpoint,
        repo_id,
        kind=args.kind,
        report=args.report,
        base_model=args.base_model,
        dataset_id=args.dataset_id,
        license=args.license,
        private=args.private,
        commit_message=args.commit_message,
        template=args.template,
        dry_run=args.dry_run,
        card_path=args.card_path,
    )
    if result.dry_run:
        target = args.card_path or str(Path(args.checkpoint) / "README.md")
        print(f"Dry run: wrote the card to {target}; would push {', '.join(result.files)} to {repo_id}.")
    else:
        print(f"Published {', '.join(result.files)} to {result.repo_url} in commit {result.commit_oid}.")
        if result.deleted:
            print(f"Removed stale weight files: {', '.join(result.deleted)}.")
    return result


if __name__ == "__main__":
    from mimir_hf.hub import PublishError

    sys.exit(run_recipe(main, user_errors=(PublishError,)))
