"""Stage 2 of MIMIR: adversarial finetuning of the pretrained encoder as a stock transformers classifier.

    accelerate launch recipes/finetune.py                                   # quickstart (after recipes/pretrain.py)
    accelerate launch recipes/finetune.py --config recipes/configs/finetune_cifar10_vit_t.yaml
    accelerate launch recipes/finetune.py --config ... --model_name_or_path scratch   # the from-scratch baseline

Every option of ModelArguments, DataArguments and AdversarialTrainingArguments is accepted
(`--help` lists them); a config key that none of them knows is an error. The output directory
is a stock transformers checkpoint (a mean-pooled `BeitForImageClassification` by default, a
`ViTForImageClassification` with `--pooling cls`): `pipeline("image-classification", model=output_dir)` works as is.
An output_dir holding checkpoints of an unfinished run continues from the last one; one holding a
finished run is refused unless --overwrite_output_dir. Ctrl-C stops with one line naming the last
checkpoint. A user error (bad path, missing checkpoint) prints one line and exits with status 2;
`--debug` or MIMIR_DEBUG=1 shows the traceback.
"""

import sys
from pathlib import Path

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.data import DataArguments
from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
from mimir_hf.training.output_dir import OutputDirArguments, run_in_output_dir

QUICKSTART = Path(__file__).resolve().parent / "configs" / "finetune_quickstart.yaml"
QUICKSTART_OUTPUT = "outputs/quickstart-finetune"
EVALUATE = "python recipes/evaluate.py"


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args, output_args = parse_recipe_args(
        (ModelArguments, DataArguments, AdversarialTrainingArguments, OutputDirArguments),
        argv=argv,
        default_config=QUICKSTART,
        description=__doc__,
    )
    from mimir_hf.finetuning.run import run_finetuning

    metrics = run_in_output_dir(run_finetuning, model_args, data_args, training_args, output_args.overwrite_output_dir)
    output_dir = training_args.output_dir
    if training_args.should_log:
        next_step = EVALUATE if output_dir == QUICKSTART_OUTPUT else f"{EVALUATE} --config <an evaluate config> --model_name_or_path {output_dir}"
        print(f"Classifier written to {output_dir}. Next, measure its robustness: {next_step}", flush=True)
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
