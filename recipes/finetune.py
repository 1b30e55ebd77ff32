"""Stage 2 of MIMIR: adversarial finetuning of the pretrained encoder as a stock transformers classifier.

    accelerate launch recipes/finetune.py                                   # quickstart (after recipes/pretrain.py)
    accelerate launch recipes/finetune.py --config recipes/configs/finetune_cifar10_vit_t.yaml
    accelerate launch recipes/finetune.py --config ... --model_name_or_path scratch   # the from-scratch baseline

Every option of ModelArguments, DataArguments and AdversarialTrainingArguments is accepted
(`--help` lists them); a config key that none of them knows is an error. The output directory
is a stock transformers checkpoint (a mean-pooled `BeitForImageClassification` by default, a
`ViTForImageClassification` with `--pooling cls`): `pipeline("image-classification", model=output_dir)` works as is.
A user error (bad path, missing checkpoint) prints one line and exits with status 2; `--debug` or
MIMIR_DEBUG=1 shows the traceback.
"""

import sys
from pathlib import Path

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.data import DataArguments
from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
from mimir_hf.training import finish_distributed

QUICKSTART = Path(__file__).resolve().parent / "configs" / "finetune_quickstart.yaml"


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_recipe_args(
        (ModelArguments, DataArguments, AdversarialTrainingArguments), argv=argv, default_config=QUICKSTART
    )
    from mimir_hf.finetuning.run import run_finetuning

    try:
        return run_finetuning(model_args, data_args, training_args)
    finally:
        finish_distributed()


if __name__ == "__main__":
    sys.exit(run_recipe(main))
