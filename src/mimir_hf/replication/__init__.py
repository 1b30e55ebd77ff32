"""The paper's comparison as one command: pretraining arms -> the same adversarial finetuning -> the same
evaluations, with paired statistics and an archive of the evidence.

Layered above every stage (it runs the recipes as subprocesses, exactly the commands a user would
type): `ReplicationArguments` (the user's options) -> `Replication` (the resolved plan: stage configs,
arms, runs) -> `plan_stages` -> `run_stages` -> `write_results` / `archive_run`; `run_replication`
does all of it.
"""

from .archive import archive_run
from .arguments import ReplicationArguments
from .arms import BUILTIN_ARMS, Arm, Run, finetune_method_label
from .driver import UNFINISHED_EXIT_CODE, run_replication
from .plan import EVALUATIONS, Evaluation, Replication, Stage, check_data_dir, plan_stages
from .results import HEADLINE_ATTACKS, collect_results, format_markdown, paired_statistics, plot_results, write_results
from .scheduler import StageFailedError, StageScheduler, load_stage_log, run_stages, source_commit

__all__ = [
    "Arm",
    "BUILTIN_ARMS",
    "EVALUATIONS",
    "Evaluation",
    "HEADLINE_ATTACKS",
    "Replication",
    "ReplicationArguments",
    "Run",
    "Stage",
    "StageFailedError",
    "StageScheduler",
    "UNFINISHED_EXIT_CODE",
    "archive_run",
    "check_data_dir",
    "collect_results",
    "finetune_method_label",
    "format_markdown",
    "load_stage_log",
    "paired_statistics",
    "plan_stages",
    "plot_results",
    "run_replication",
    "run_stages",
    "source_commit",
    "write_results",
]
