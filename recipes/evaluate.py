"""Robustness evaluation of a finetuned classifier: PGD, CW, AutoAttack, Square and the MIMIR-aware
adaptive attacks, with checks against gradient masking.

    python recipes/evaluate.py                                             # the quickstart classifier
    python recipes/evaluate.py --config recipes/configs/evaluate_cifar10.yaml \
        --model_name_or_path outputs/cifar10-finetune                      # RobustBench-style CIFAR-10
    python recipes/evaluate.py --model_name_or_path <dir or Hub id> --dataset uoft-cs/cifar10 \
        --max_eval_samples 1000 --attacks clean pgd-20 autoattack --fail_on_check true

Without --config the quickstart classifier gets the quickstart's cut-down settings
(recipes/configs/evaluate_quickstart.yaml); any other --model_name_or_path gets the full protocol
(the defaults --help lists), says so, and writes to outputs/<model name>-eval unless --output_dir.
Writes robustness.json, per_sample.npz, autoattack.log, accuracy_vs_epsilon.png and
recipe_config.yaml to --output_dir and prints the table. Ctrl-C stops with one line; the same
command continues from the last finished batch. Every option of EvaluationArguments and
DataArguments is accepted (`--help` lists them). Exit status 3 when --fail_on_check is set and a
gradient-masking check failed; 2 on a user error (one line on stderr; `--debug` or MIMIR_DEBUG=1
shows the traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mimir_hf.artefacts import CORRUPTIONS_FILE, REPORT_FILE
from mimir_hf.cli import parse_recipe_args, run_recipe, save_recipe_config
from mimir_hf.data import DataArguments
from mimir_hf.evaluation import EvaluationArguments, evaluate_from_args
from mimir_hf.evaluation.attack_specs import parse_budget
from mimir_hf.evaluation.state import STATE_DIRNAME
from mimir_hf.evaluation.robustbench import (
    RobustBenchArguments,
    write_robustbench_corruptions_info,
    write_robustbench_submission,
)
from mimir_hf.training.checkpoints import check_weights_readable
from mimir_hf.training.output_dir import stop_on_interrupt
from mimir_hf.validation import check_device, check_threat_model_budget
from mimir_hf.launch import is_main_process

QUICKSTART = Path(__file__).resolve().parent / "configs" / "evaluate_quickstart.yaml"
ROBUSTBENCH_QUICKSTART = Path(__file__).resolve().parent / "configs" / "evaluate_robustbench_quickstart.yaml"
QUICKSTART_MODEL = "outputs/quickstart-finetune"
CHECK_FAILED_EXIT_CODE = 3


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value a command line gives `--name` (also `--name=value` and the dashed spelling), or None."""
    spellings = (f"--{name}", f"--{name.replace('_', '-')}")
    for index, token in enumerate(argv):
        if token in spellings and index + 1 < len(argv):
            return argv[index + 1]
        flag, equals, value = token.partition("=")
        if equals and flag in spellings:
            return value
    return None


def _default_config(argv: list[str]) -> Path | None:
    """The quickstart's cut-down settings for the quickstart classifier; a user's own model gets the full protocol."""
    if _flag_value(argv, "config") is not None:
        return None
    model = _flag_value(argv, "model_name_or_path")
    if model is not None and Path(model) != Path(QUICKSTART_MODEL):
        return None
    return ROBUSTBENCH_QUICKSTART if _flag_value(argv, "protocol") == "robustbench" else QUICKSTART


# RobustBench's own evaluation: clean and the standard AutoAttack suite at the one budget, nothing else.
_ROBUSTBENCH_PROTOCOL = {"attacks": ["clean", "autoattack"], "autoattack_version": "standard", "epsilon_sweep": []}


def _announce_full_protocol(eval_args: EvaluationArguments, data_args: DataArguments, argv: list[str], main_process: bool) -> None:
    """Say loudly what a user's own model is measured with, and how to get a quick look instead."""
    if _flag_value(argv, "output_dir") is None:  # not into the quickstart's folder
        eval_args.output_dir = str(Path("outputs") / f"{Path(eval_args.model_name_or_path).name}-eval")
    if eval_args.protocol == "robustbench":  # the protocol's attacks, where the command line does not name others
        for name, value in _ROBUSTBENCH_PROTOCOL.items():
            if _flag_value(argv, name) is None:
                setattr(eval_args, name, value)
    if not main_process:
        return
    images = "every image" if data_args.max_eval_samples is None else f"the first {data_args.max_eval_samples} images"
    print(
        f"Evaluating {eval_args.model_name_or_path} with the full protocol: {images} of {data_args.dataset!r} "
        f"(--dataset) split {data_args.eval_split!r}, attacks {', '.join(eval_args.attacks)}, AutoAttack "
        f"{eval_args.autoattack_version}, writing to {eval_args.output_dir}. On a CPU this can take hours; for a "
        f"quick look use --config {QUICKSTART.relative_to(QUICKSTART.parents[2])} (64 images, reduced attacks).",
        flush=True,
    )


def _model_config(path: str) -> dict | None:
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(path).to_dict()
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    default = _default_config(argv)
    eval_args, data_args, robustbench_args = parse_recipe_args(
        (EvaluationArguments, DataArguments, RobustBenchArguments), argv, default_config=default, description=__doc__
    )
    main_process = is_main_process()  # under `accelerate launch`, rank 0 writes and prints
    check_device(eval_args.device)
    check_threat_model_budget(parse_budget(eval_args.epsilon, norm=eval_args.norm), "--epsilon", eval_args.norm)
    check_weights_readable(eval_args.model_name_or_path)
    if default is None and _flag_value(argv, "config") is None:
        _announce_full_protocol(eval_args, data_args, argv, main_process)
    if eval_args.model_name_or_path == QUICKSTART_MODEL and not Path(QUICKSTART_MODEL).is_dir():
        raise FileNotFoundError(
            f"The quickstart classifier {QUICKSTART_MODEL!r} does not exist (looked in {Path.cwd()}). Run the "
            "quickstart first (README.md, 'The whole pipeline'): recipes/pretrain.py then recipes/finetune.py under "
            "`accelerate launch -q --config_file recipes/accelerate_configs/single_process.yaml`, from the repository "
            "root, or evaluate another checkpoint with --model_name_or_path."
        )
    output_dir = Path(eval_args.output_dir)
    resumes = f"Interrupted. The same command continues the evaluation from its last finished batch ({output_dir / STATE_DIRNAME})."
    with stop_on_interrupt(output_dir, message=lambda: resumes):
        report = evaluate_from_args(eval_args, data_args, robustbench_args=robustbench_args)
    if not main_process:
        return 0
    # the run's record, once the run is accepted and done: a refused one leaves the previous record alone
    save_recipe_config(output_dir, eval_args, data_args, robustbench_args)
    print(report.format_table())
    print(f"\nReport written to {output_dir / REPORT_FILE}")
    if eval_args.corruptions_dataset:
        from mimir_hf.evaluation.corruptions import evaluate_corruptions

        corrupted = evaluate_corruptions(
            eval_args.model_name_or_path, eval_args.corruptions_dataset, split=eval_args.corruptions_split,
            dataset_config=eval_args.corruptions_config, corruption_column=eval_args.corruption_column,
            severity_column=eval_args.severity_column, image_size=data_args.image_size, batch_size=eval_args.batch_size,
            device=eval_args.device, output_dir=output_dir, progress=not eval_args.no_progress,
        )
        print("\n" + corrupted.format_table())
        print(f"Corruption results written to {output_dir / CORRUPTIONS_FILE}")
    if eval_args.protocol == "robustbench":
        submission = write_robustbench_submission(
            report, output_dir, robustbench_args, _model_config(eval_args.model_name_or_path)
        )
        print(f"RobustBench ModelInfo: {submission.paths['model_info']}")
        print(f"Submission draft: {submission.paths['submission']}; model-zoo entry: {submission.paths['model_zoo']}")
        if submission.missing:
            print(f"Left for you to fill in (only the authors know them): {', '.join(submission.missing)}")
        if submission.problems:
            print(f"NOT A ROBUSTBENCH ENTRY: {'; '.join(submission.problems)}")
        if eval_args.corruptions_dataset:
            corrupted_info = write_robustbench_corruptions_info(
                corrupted.to_dict(), report, output_dir, robustbench_args, _model_config(eval_args.model_name_or_path),
            )
            print(f"RobustBench corruptions ModelInfo: {corrupted_info.paths['model_info']}")
            if corrupted_info.problems:
                print(f"NOT A ROBUSTBENCH ENTRY (corruptions): {'; '.join(corrupted_info.problems)}")
    if eval_args.fail_on_check and report.failed_checks:
        names = ", ".join(c.name for c in report.failed_checks)
        print(f"error: gradient-masking check(s) failed: {names}", file=sys.stderr)
        return CHECK_FAILED_EXIT_CODE
    print(
        f"Next, the model card (drop --dry_run to publish): python recipes/publish.py --checkpoint "
        f"{eval_args.model_name_or_path} --report {output_dir / 'robustness.json'} --repo_id your-org/your-model --dry_run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_recipe(main))
