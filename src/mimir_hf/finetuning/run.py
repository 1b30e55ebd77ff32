"""What `recipes/finetune.py` does, as a library function so that it can be tested and reused.

Data → classifier (converted from the pretrained encoder, or from scratch) → `AdversarialTrainer`
→ an output folder that is a stock transformers classifier checkpoint (`beit`, the mean-pooled
default, or `vit` with `pooling: cls`): weights, config with `id2label`, the image processor that
reproduces the evaluation preprocessing, `recipe_config.yaml` and the metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, set_seed

from ..data import (
    DataArguments,
    ShardedStream,
    class_names,
    collate_images,
    eval_transform,
    hold_out_validation,
    looks_like_test_split,
    make_image_processor,
    with_transform,
)
from ..training.runs import save_recipe_config
from ..training import resolve_resume
from ..training.output_dir import announce_run
from .arguments import AdversarialTrainingArguments, ModelArguments
from .model import build_classifier, check_checkpoint_exists
from .trainer import AdversarialTrainer

__all__ = ["label_names_for", "run_finetuning"]

logger = logging.getLogger(__name__)

def _label_values(dataset) -> torch.Tensor:
    return torch.as_tensor(dataset["label"], dtype=torch.int64)


def label_names_for(train_data, eval_data=None) -> dict[int, str]:
    """`id2label` for the data: the ClassLabel names, else `"0"…"K-1"`; checks that both splits agree.

    A stream's labels cannot be counted before it is read, so it must name its classes; its batches
    are checked against them as they come (`CheckedCollator`).
    """
    names = class_names(train_data)
    if isinstance(train_data, ShardedStream) and names is None:
        raise ValueError(
            "Streamed finetuning takes the classes from the label column's ClassLabel feature, which this data set "
            "lacks (webdataset `.cls` labels are plain integers): write the shards with a ClassLabel label column "
            "(parquet saved by `datasets` keeps it), or leave streaming off."
        )
    labels = None if isinstance(train_data, ShardedStream) else _label_values(train_data)
    num_labels = len(names) if names is not None else int(labels.max()) + 1
    if labels is not None and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(
            f"Training labels span [{int(labels.min())}, {int(labels.max())}] but the data names {num_labels} classes."
        )
    if eval_data is not None:
        eval_names = class_names(eval_data)
        if names is not None and eval_names is not None and eval_names != names:
            raise ValueError(f"The train and eval splits name different classes: {names} vs {eval_names}.")
        eval_labels = _label_values(eval_data)
        if int(eval_labels.min()) < 0 or int(eval_labels.max()) >= num_labels:
            raise ValueError(
                f"Evaluation labels reach {int(eval_labels.max())} but training has only {num_labels} classes: "
                "the label count does not match between the splits."
            )
    return {i: (names[i] if names is not None else str(i)) for i in range(num_labels)}


def _source_image_size(model_args: ModelArguments) -> int | list[int] | None:
    """The starting checkpoint's resolution, from its config (None from scratch)."""
    if model_args.from_scratch:
        return None
    source = model_args.model_name_or_path
    check_checkpoint_exists(source)
    return getattr(AutoConfig.from_pretrained(source), "image_size", None)


def _training_and_validation(data_args: DataArguments, training_args: AdversarialTrainingArguments, train_data):
    """(training images, validation images or None): a held-out slice of training, else `eval_split`.

    The reference keeps its last epoch and never selects on test images; validating on a test split
    is allowed (it is only monitoring) but warned about, loudly when it picks the checkpoint.
    """
    if data_args.validation_split_size is not None:
        train_data, validation = hold_out_validation(
            train_data, data_args.validation_split_size, seed=data_args.validation_split_seed
        )
        logger.info(
            "Validating on %d images held out of the training split (seed %d); training on the %s.",
            len(validation),
            data_args.validation_split_seed,
            "rest of the stream" if data_args.streaming else f"other {len(train_data)}",
        )
        return train_data, validation
    if training_args.eval_strategy == "no" and not training_args.do_eval:
        return train_data, None
    if looks_like_test_split(data_args.eval_split):
        if training_args.load_best_model_at_end:
            logger.warning(
                "load_best_model_at_end selects the checkpoint on the %r split, which holds test images: numbers "
                "later reported on those images are optimistically biased. Hold out training images instead "
                "(validation_split_size: 1000), or keep the last checkpoint as the reference does.",
                data_args.eval_split,
            )
        else:
            logger.warning(
                "Validation runs on the %r split, which holds test images. That is monitoring only (the last "
                "checkpoint is kept); to validate without touching test images, set validation_split_size.",
                data_args.eval_split,
            )
    validation = data_args.load(data_args.eval_split, require_labels=True, max_samples=data_args.max_eval_samples)
    return train_data, validation


def run_finetuning(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: AdversarialTrainingArguments,
) -> dict[str, Any]:
    """Finetune adversarially, save a stock classifier to `output_dir`, return train + eval metrics."""
    set_seed(training_args.seed)
    image_size = data_args.resolve_image_size(_source_image_size(model_args))

    if data_args.streaming:
        train_data = data_args.training_stream(require_labels=True, max_steps=training_args.max_steps)
    else:
        train_data = data_args.load(data_args.train_split, require_labels=True, max_samples=data_args.max_train_samples)
    train_data, eval_data = _training_and_validation(data_args, training_args, train_data)
    id2label = label_names_for(train_data, eval_data)

    model = build_classifier(
        model_args,
        num_labels=len(id2label),
        id2label=id2label,
        image_size=image_size,
        drop_path_rate=training_args.drop_path_rate,
        generator=torch.Generator().manual_seed(training_args.seed),
    )
    processor = make_image_processor(image_size, data_args.eval_crop_fraction)
    trainer = AdversarialTrainer(
        model=model,
        args=training_args,
        train_dataset=data_args.training_dataset(train_data, image_size),
        eval_dataset=None if eval_data is None else with_transform(eval_data, eval_transform(image_size, data_args.eval_crop_fraction)),
        data_collator=collate_images,
        processing_class=processor,
    )
    announce_run(training_args)  # once the run is set up: a refused one prints only its error
    result = trainer.train(resume_from_checkpoint=resolve_resume(training_args))
    trainer.save_model()
    metrics = dict(result.metrics)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    if eval_data is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        processor.save_pretrained(output_dir)
        save_recipe_config(output_dir, model_args, data_args, training_args)
        logger.info("Classifier written to %s (a stock `%s` checkpoint).", output_dir, model.config.model_type)
    return metrics
