"""Convert one of the MIMIR authors' published `.pth` checkpoints into a stock transformers checkpoint.

    python recipes/convert_reference.py --checkpoint checkpoint-799.pth --kind mae --output_dir converted/mimir-vit-b-cifar10-pretrain
    python recipes/convert_reference.py --checkpoint checkpoint-99.pth --kind vit --labels cifar10 --output_dir converted/mimir-vit-b-cifar10
    python recipes/convert_reference.py --checkpoint weight.pth --kind swin --output_dir converted/mimir-swin-l-imagenet

The file is read with `torch.load(weights_only=True)`: no pickled code runs. The output folder
(weights, config.json, the reference's evaluation image processor, conversion.json) is what
recipes/evaluate.py, recipes/publish.py, `AutoModel*` and `pipeline` take. docs/model_zoo.md lists
every published checkpoint with its convert → evaluate → publish commands.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.convert import ConversionArguments, convert_reference_checkpoint


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_recipe_args((ConversionArguments,), argv, description=__doc__)
    if not args.checkpoint or not args.output_dir:
        raise ValueError("--checkpoint and --output_dir are required.")
    result = convert_reference_checkpoint(**asdict(args))  # the dataclass fields are the function's arguments
    record = result.record
    weights = "the EMA copy" if record["used_ema_weights"] else "the raw weights"
    print(
        f"Converted {record['source_file']} ({record['source_architecture']} layout, {weights}"
        f"{', under ' + repr(record['source_wrapper']) if record['source_wrapper'] else ''}) into a "
        f"{record['model_class']} at {result.output_dir} ({record['image_size']} px, [0, 1] pixels)."
    )
    if record["model_class"].endswith("ForPreTraining"):
        print(f"Next, finetune it: accelerate launch -q --config_file recipes/accelerate_configs/single_process.yaml "
              f"recipes/finetune.py --config <a finetune config> --model_name_or_path {result.output_dir}")
    else:
        print(f"Next, measure its robustness: python recipes/evaluate.py --config <an evaluate config> "
              f"--model_name_or_path {result.output_dir} (docs/model_zoo.md lists the commands per checkpoint)")
    return 0


if __name__ == "__main__":
    sys.exit(run_recipe(main))
