"""The evidence of a run, copied out of its run folder into one meant for a repository.

Run folders hold checkpoints and do not survive a change of machine; the archive keeps the small
files a reader needs to check every number (reports, per-sample arrays, logs, configs, trainer
states, plots) and, on request, the finetuned classifiers, so that anyone can attack the same
models again. Machine paths in text files are replaced by placeholders: they mean nothing
elsewhere and do not belong in a repository.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from .plan import Replication
from .scheduler import STAGE_LOG, load_stage_log

__all__ = ["archive_run"]

TEXT_SUFFIXES = (".json", ".md", ".log", ".yaml", ".txt")  # machine paths are replaced in these
ARCHIVED_SUFFIXES = (*TEXT_SUFFIXES, ".png", ".npz")
ARCHIVE_MAX_BYTES = 5 * 2**20  # per file: reports and per-sample arrays are far smaller
RUN_FILES = (STAGE_LOG, "results.json", "results.md", "results.png")


def archive_run(replication: Replication, stage_names: list[str] | None = None) -> list[Path]:
    """Copy the small result files of `stage_names` (None: the whole run) into `archive_dir`; returns the copies.

    Only the top level of each stage folder is read (checkpoints and the evaluation's per-batch state
    live in sub-folders), only the suffixes above (plus a finetune's `model.safetensors` with
    `archive_weights`), and nothing over ARCHIVE_MAX_BYTES.
    """
    args = replication.args
    if not args.archive_dir:
        return []
    out, dest = replication.output_dir, Path(args.archive_dir)
    sources: list[tuple[Path, Path]] = []
    folders = stage_names if stage_names is not None else sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "logs")
    for name in folders:
        folder = out / name
        if folder.is_dir():
            suffixes = (*ARCHIVED_SUFFIXES, ".safetensors") if args.archive_weights and name.startswith("finetune-") else ARCHIVED_SUFFIXES
            sources += [(f, dest / name / f.name) for f in sorted(folder.iterdir())
                        if f.is_file() and f.suffix in suffixes and f.stat().st_size <= ARCHIVE_MAX_BYTES]
        log = out / "logs" / f"{name}.log"
        if log.is_file() and log.stat().st_size <= ARCHIVE_MAX_BYTES:
            sources.append((log, dest / "logs" / log.name))
    sources += [(out / name, dest / name) for name in RUN_FILES if (out / name).is_file()]
    replacements = _machine_paths(replication)
    for source, target in sources:
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix in TEXT_SUFFIXES:
            text = source.read_text(encoding="utf-8", errors="replace")
            for path, placeholder in replacements:
                text = text.replace(path, placeholder)
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copy2(source, target)
    return [target for _, target in sources]


def _machine_paths(replication: Replication) -> list[tuple[str, str]]:
    """This machine's paths in the run's text files and their placeholders, longest first."""
    args = replication.args
    pairs = {}
    # the checkout whose recipes ran each stage (a run may have been started from another copy)
    repos = {str(Path(token).parents[1]) for record in load_stage_log(replication.output_dir).values()
             for token in shlex.split(str(record.get("command", "")))
             if token.endswith(".py") and Path(token).is_absolute() and Path(token).parent.name == "recipes"}
    for path, placeholder in ((args.output_dir, "<output_dir>"), (args.data_dir, "<data_dir>"), (replication.python, "python"),
                              (sys.executable, "python"), (sys.prefix, "<python_prefix>"),
                              (str(replication.recipes_dir.parent), "<repo>"), *((repo, "<repo>") for repo in repos),
                              (os.getcwd(), "<cwd>")):
        if path:
            for form in {str(path), str(Path(path).resolve())}:
                if form not in ("", ".", "/"):
                    pairs[form] = placeholder
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))
