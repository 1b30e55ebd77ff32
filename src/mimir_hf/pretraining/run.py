"""What `recipes/pretrain.py` does, as a library function so that it can be tested and reused.

The recipe stays a thin command-line shell; this module turns its three argument dataclasses
into a model, data, a `MimirTrainer` run, and an output folder that holds everything a user (or
the finetuning recipe) needs: the checkpoint, its image processor, the arguments it was made
with, and a picture of its reconstructions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..training.runs import save_recipe_config
from ..data import DataArguments, collate_images, eval_transform, make_image_processor, with_transform
from ..data.splits import hold_out_validation
from ..modeling import MimirForPreTraining, mimir_config
from ..training import resolve_resume
from ..training.output_dir import announce_run
from .arguments import MimirTrainingArguments, PretrainModelArguments
from .trainer import MimirTrainer
from .visualize import save_reconstruction_grid

__all__ = ["build_model", "run_pretraining"]

logger = logging.getLogger(__name__)


def build_model(model_args: PretrainModelArguments, image_size: int) -> MimirForPreTraining:
    """A new MIMIR model from a preset, or one loaded from a ViT-MAE checkpoint."""
    if model_args.model_name_or_path:
        return MimirForPreTraining.from_pretrained(model_args.model_name_or_path)
    overrides: dict[str, Any] = {
        name: getattr(model_args, name)
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        if getattr(model_args, name) is not None
    }
    if "hidden_size" in overrides and "intermediate_size" not in overrides:
        overrides["intermediate_size"] = 4 * overrides["hidden_size"]
    config = mimir_config(
        model_args.model_size, image_size, model_args.patch_size, norm_pix_loss=model_args.norm_pix_loss, **overrides
    )
    return MimirForPreTraining(config)


def run_pretraining(
    model_args: PretrainModelArguments,
    data_args: DataArguments,
    training_args: MimirTrainingArguments,
) -> dict[str, Any]:
    """Pretrain, save to `training_args.output_dir`, and return the training metrics."""
    set_seed(training_args.seed)
    if model_args.model_name_or_path:
        model = build_model(model_args, image_size=0)
        image_size = data_args.resolve_image_size(model.config.image_size, resizable=False)
    else:
        image_size = data_args.resolve_image_size(None)
        model = build_model(model_args, image_size)

    if data_args.streaming:
        train_data = data_args.training_stream(max_steps=training_args.max_steps)
    else:
        train_data = data_args.load(data_args.train_split, max_samples=data_args.max_train_samples)
        global_batch = training_args.per_device_train_batch_size * training_args.world_size
        if len(train_data) < max(2, global_batch if training_args.dataloader_drop_last else 2):
            raise ValueError(
                f"{data_args.dataset!r} split {data_args.train_split!r} has {len(train_data)} images, fewer than one "
                f"batch of {global_batch}; lower per_device_train_batch_size or add data."
            )
    eval_data = held_out = None
    if data_args.validation_split_size is not None:
        # The same seeded slice that finetuning holds out, so a comparison's validation images are never
        # seen by any stage; the pretraining loss is monitored on them when eval_strategy asks for it.
        train_data, held_out = hold_out_validation(train_data, data_args.validation_split_size, seed=data_args.validation_split_seed)
        eval_data = held_out
        logger.info("Held %d training images out (seed %d); pretraining on the %s.", len(eval_data), data_args.validation_split_seed,
                    "rest of the stream" if data_args.streaming else f"other {len(train_data)}")
        if training_args.eval_strategy == "no":
            eval_data = None
        else:
            eval_data = with_transform(eval_data, eval_transform(image_size, data_args.eval_crop_fraction))
    elif training_args.eval_strategy != "no":
        eval_data = data_args.load(data_args.eval_split, max_samples=data_args.max_eval_samples)
        eval_data = with_transform(eval_data, eval_transform(image_size, data_args.eval_crop_fraction))

    trainer = MimirTrainer(
        model=model,
        args=training_args,
        train_dataset=data_args.training_dataset(train_data, image_size),
        eval_dataset=eval_data,
        data_collator=collate_images,
    )
    announce_run(training_args)  # once the run is set up: a refused one prints only its error
    result = trainer.train(resume_from_checkpoint=resolve_resume(training_args))
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        make_image_processor(image_size, data_args.eval_crop_fraction).save_pretrained(output_dir)
        save_recipe_config(output_dir, model_args, data_args, training_args)
        if model_args.num_preview_images > 0:
            # Drawn from the held-out training images when there are any, so that no committed picture of a
            # run shows test images; otherwise from the first images of the evaluation split.
            count = model_args.num_preview_images
            if held_out is not None:
                preview = held_out.select(range(min(count, len(held_out))))
            else:
                preview = data_args.load(data_args.eval_split, max_samples=count)
            pixels = collate_images(list(with_transform(preview, eval_transform(image_size, data_args.eval_crop_fraction))))
            unwrapped = trainer.accelerator.unwrap_model(trainer.model)
            path = save_reconstruction_grid(unwrapped, pixels["pixel_values"].to(unwrapped.device), output_dir / "reconstructions.png")
            logger.info("Reconstruction grid written to %s", path)
    return result.metrics
