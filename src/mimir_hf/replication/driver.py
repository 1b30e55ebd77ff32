"""`run_replication`: plan, run, tabulate and archive a replication (what recipes/replicate_cifar10.py does)."""

from __future__ import annotations

import shlex
import sys

from .archive import archive_run
from .plan import Replication, check_data_dir, plan_stages
from .results import write_results
from .scheduler import run_stages

__all__ = ["UNFINISHED_EXIT_CODE", "run_replication"]

UNFINISHED_EXIT_CODE = 4  # some stages did not finish within --launch_limit / --time_limit


def run_replication(replication: Replication) -> int:
    """Run every stage (or print them, or only tabulate), then write the results and the archive.

    Returns 0, or `UNFINISHED_EXIT_CODE` when the time limits left stages unfinished: the results of
    the finished ones are written all the same, and `--skip_existing` completes the rest later.
    """
    args = replication.args
    stages = plan_stages(replication)
    if args.dry_run:
        for stage in stages:
            print(shlex.join(stage.command(replication.python)))
        return 0
    if args.results_only:
        write_results(replication)
        archive_run(replication)
        return 0
    check_data_dir(replication, stages)
    print(f"Replication: runs {', '.join(run.key for run in replication.runs)}, {len(stages)} stages, configs from "
          f"{args.config_set or args.config_dir}, outputs in {args.output_dir}"
          + (f", training under accelerate launch --config_file {replication.accelerate_config}"
             if replication.accelerate_config else ""), flush=True)
    stage_log = run_stages(stages, replication, on_done=lambda stage: archive_run(replication, [stage.name]))
    write_results(replication, stage_log)
    archive_run(replication)
    unfinished = [stage.name for stage in stages if {"stopped", "not_started"} & set(stage_log.get(stage.name, {}))]
    if unfinished:
        print(f"error: {', '.join(unfinished)} did not finish within the time limits; the results above cover the "
              "finished stages. Rerun with --skip_existing (and more time) to complete them.", file=sys.stderr, flush=True)
        return UNFINISHED_EXIT_CODE
    return 0
