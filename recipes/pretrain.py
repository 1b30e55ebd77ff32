"""Stage 1 of MIMIR: adversarial masked-autoencoder pretraining.

    accelerate launch recipes/pretrain.py                                   # quickstart, built-in data
    accelerate launch recipes/pretrain.py --config recipes/configs/pretrain_cifar10_vit_t.yaml
    accelerate launch recipes/pretrain.py --config ... --learning_rate 1e-4  # command line overrides

Every option of MimirTrainingArguments, DataArguments and PretrainModelArguments is accepted
(`--help` lists them); a config key that none of them knows is an error. An output_dir holding
checkpoints of an unfinished run continues from the last one; one holding a finished run is refused
unless --overwrite_output_dir. Ctrl-C stops with one line naming the last checkpoint. A user error
(bad path, bad value) prints one line and exits with status 2; `--debug` or MIMIR_DEBUG=1 shows the
traceback.
"""

import sys
from pathlib import Path

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.data import DataArguments
from mimir_hf.pretraining import MimirTrainingArguments
from mimir_hf.pretraining.run import PretrainModelArguments, run_pretraining
from mimir_hf.training.output_dir import OutputDirArguments, run_in_output_dir

QUICKSTART = Path(__file__).resolve().parent / "configs" / "pretrain_quickstart.yaml"
QUICKSTART_OUTPUT = "outputs/quickstart-pretrain"
FINETUNE = "accelerate launch -q --config_file recipes/accelerate_configs/single_process.yaml recipes/finetune.py"


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args, output_args = parse_recipe_args(
        (PretrainModelArguments, DataArguments, MimirTrainingArguments, OutputDirArguments),
        argv=argv,
        default_config=QUICKSTART,
        description=__doc__,
    )
    metrics = run_in_output_dir(run_pretraining, model_args, data_args, training_args, output_args.overwrite_output_dir)
    output_dir = training_args.output_dir
    if training_args.should_log:
        next_step = FINETUNE if output_dir == QUICKSTART_OUTPUT else f"{FINETUNE} --config <a finetune config> --model_name_or_path {output_dir}"
        print(f"Pretrained checkpoint written to {output_dir}. Next, finetune it: {next_step}", flush=True)
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
