"""Stage 1 of MIMIR: adversarial masked-autoencoder pretraining.

    accelerate launch recipes/pretrain.py                                   # quickstart, built-in data
    accelerate launch recipes/pretrain.py --config recipes/configs/pretrain_cifar10_vit_t.yaml
    accelerate launch recipes/pretrain.py --config ... --learning_rate 1e-4  # command line overrides

Every option of MimirTrainingArguments, DataArguments and PretrainModelArguments is accepted
(`--help` lists them); a config key that none of them knows is an error. A user error (bad path,
bad value) prints one line and exits with status 2; `--debug` or MIMIR_DEBUG=1 shows the traceback.
"""

import sys
from pathlib import Path

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.data import DataArguments
from mimir_hf.pretraining import MimirTrainingArguments
from mimir_hf.pretraining.run import PretrainModelArguments, run_pretraining
from mimir_hf.training import finish_distributed

QUICKSTART = Path(__file__).resolve().parent / "configs" / "pretrain_quickstart.yaml"


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_recipe_args(
        (PretrainModelArguments, DataArguments, MimirTrainingArguments), argv=argv, default_config=QUICKSTART
    )
    try:
        return run_pretraining(model_args, data_args, training_args)
    finally:
        finish_distributed()


if __name__ == "__main__":
    sys.exit(run_recipe(main))
