"""`evaluate_robustness`: load a classifier and a data split, run the named attacks, check, report."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attacks import preserve_mode
from ..data.processing import load_image_processor
from ..validation import check_pixel_values
from .attacks import (
    AttackSettings,
    AttackSpec,
    Attack,
    autoattack_version as _autoattack_package_version,
    capture_autoattack_log,
    format_epsilon,
    parse_attack_name,
    parse_budget,
)
from .checks import LARGE_EPSILON, run_checks
from .report import AUTOATTACK_LOG, RobustnessReport
from .results import AttackResult
from .wrapper import LogitsModel, normalization_from_processor

__all__ = [
    "DEFAULT_ATTACKS",
    "DEFAULT_EPSILON_SWEEP",
    "GradientMaskingWarning",
    "evaluate_from_args",
    "evaluate_robustness",
    "load_classifier",
    "plan_attacks",
]

logger = logging.getLogger(__name__)

DEFAULT_ATTACKS = ("clean", "pgd-20", "pgd-100", "cw", "autoattack", "square", "pgd-mi", "pgd-feature")
DEFAULT_EPSILON_SWEEP = (1 / 255, 2 / 255, 4 / 255, 16 / 255, 64 / 255)


class GradientMaskingWarning(UserWarning):
    """A gradient-masking sanity check failed: the robust accuracy is probably overestimated."""


# ----------------------------------------------------------------------------------------------
# planning


def plan_attacks(
    attacks: Sequence[str],
    settings: AttackSettings,
    epsilon_sweep: Sequence[float | str] = (),
    sweep_attack: str = "pgd-20",
) -> list[AttackSpec]:
    """Resolve names (and the ε-sweep) into specs; errors for unknown names or bad budgets come here,
    before anything is loaded. `clean` always runs first (robust accuracy counts only clean-correct points)."""
    if isinstance(attacks, str):
        attacks = [a for a in attacks.replace(",", " ").split() if a]
    specs = [parse_attack_name(name, settings) for name in attacks]
    sweep = [parse_budget(e, "epsilon_sweep value") for e in epsilon_sweep]
    if sweep:
        base = parse_attack_name(sweep_attack, settings)
        if base.kind == "clean":
            raise ValueError("sweep_attack must be an attack, not 'clean'.")
        for eps in sweep:
            if abs(eps - settings.epsilon) <= 1e-9:
                if all(s.name != base.name for s in specs):
                    specs.append(base)
            else:
                specs.append(parse_attack_name(f"{base.name.split('@')[0]}@eps={format_epsilon(eps)}", settings))
    unique: dict[str, AttackSpec] = {}
    for spec in specs:
        unique.setdefault(spec.name, spec)
    clean = unique.pop("clean", None) or parse_attack_name("clean", settings)
    return [clean, *unique.values()]


# ----------------------------------------------------------------------------------------------
# model and data


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_classifier(
    model: str | Path | nn.Module,
    *,
    device: str | torch.device | None = None,
    image_processor: Any = None,
) -> tuple[LogitsModel, str, Any]:
    """Wrap `model` (an object, a local directory or a Hub id) as a [0, 1]-pixels → logits module.

    Returns (wrapper, model name for the report, image processor or None).
    """
    device = torch.device(device) if device is not None else _default_device()
    if isinstance(model, (str, Path)):
        from transformers import AutoModelForImageClassification

        name = str(model)
        try:
            module = AutoModelForImageClassification.from_pretrained(name)
        except (OSError, ValueError, KeyError) as error:
            local = Path(name).expanduser()
            where = (
                f"the directory {name!r} exists but holds no image-classification checkpoint"
                if local.exists()
                else f"{name!r} is neither a local directory nor a Hub model available offline"
            )
            raise OSError(
                f"Cannot load an image classifier from {name!r}: {where}. Give a directory written by "
                f"`save_pretrained` (e.g. the finetune recipe's output) or a Hub id of an image classifier "
                f"(a `vit_mae` pretraining checkpoint must be finetuned first). Cause: {error}"
            ) from error
        if image_processor is None:
            image_processor = load_image_processor(name)
    elif isinstance(model, nn.Module):
        module = model
        source = str(getattr(model, "name_or_path", "") or getattr(getattr(model, "config", None), "_name_or_path", "") or "")
        name = source or type(model).__name__
        if image_processor is None and source and Path(source).is_dir():
            # a model object loaded from a directory: honour the processor saved beside it
            image_processor = load_image_processor(source)
    else:
        raise TypeError(f"`model` must be a path, a Hub id or an nn.Module, got {type(model).__name__}.")
    stats = normalization_from_processor(image_processor)
    config = getattr(module, "config", None)
    wrapper = LogitsModel(
        module,
        mean=stats[0] if stats else None,
        std=stats[1] if stats else None,
        num_channels=getattr(config, "num_channels", None),
    )
    wrapper.to(device)
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in wrapper.parameters()):
        logger.warning("Casting the model to float32 for the evaluation (attacks in half precision are unreliable).")
        wrapper.float()
    return wrapper, name, image_processor


def _image_size(wrapper: LogitsModel, image_processor: Any, override: int | None) -> int | None:
    if override:
        return int(override)
    config = getattr(wrapper.model, "config", None)
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    if size:
        return int(size)
    processor_size = getattr(image_processor, "size", None) or {}
    if isinstance(processor_size, dict):
        return processor_size.get("height") or processor_size.get("shortest_edge")
    return None


def _load_split(
    source: Any,
    *,
    split: str,
    dataset_config: str | None,
    image_column: str | None,
    label_column: str | None,
    image_size: int | None,
    num_samples: int | None,
    batch_size: int,
    crop_fraction: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """The first `num_samples` images of a split (RobustBench style), as [0, 1] tensors."""
    from torch.utils.data import DataLoader

    from .. import data as mdata

    if isinstance(source, (str, Path)):
        dataset = mdata.load_image_dataset(
            str(source), split, config_name=dataset_config, image_column=image_column,
            label_column=label_column, require_labels=True, max_samples=num_samples,
        )
    else:
        dataset = source
    if num_samples is not None and len(dataset) > num_samples:
        dataset = dataset.select(range(num_samples))
    names = mdata.class_names(dataset)
    if image_size is None:
        raise ValueError("Cannot tell the model's input resolution; pass image_size.")
    dataset = mdata.with_transform(dataset, mdata.eval_transform(image_size, crop_fraction))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=mdata.collate_images)
    images, labels = [], []
    for batch in loader:
        if "labels" not in batch:
            raise ValueError("The evaluation split has no labels; robust accuracy needs them (set label_column).")
        images.append(batch["pixel_values"])
        labels.append(batch["labels"])
    if not images:
        raise ValueError(f"The split {split!r} of {source!r} is empty.")
    return torch.cat(images), torch.cat(labels).long(), names


def _check_labels(wrapper: LogitsModel, labels: torch.Tensor, num_classes: int, data_names: list[str] | None) -> None:
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"The data has labels in [{low}, {high}] but the model has {num_classes} output classes: this model "
            "was not trained for this dataset (or the label column is wrong)."
        )
    config = getattr(wrapper.model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    model_names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(num_classes)]
    generic = all(n == f"LABEL_{i}" or n == "" for i, n in enumerate(model_names))
    if data_names and not generic:
        mismatched = [
            (i, model_names[i], data_names[i])
            for i in range(min(len(data_names), num_classes))
            if model_names[i].strip().lower() != str(data_names[i]).strip().lower()
        ]
        if mismatched or len(data_names) != num_classes:
            shown = ", ".join(f"{i}: model {m!r} vs data {d!r}" for i, m, d in mismatched[:5])
            raise ValueError(
                f"The model's labels do not match the data's classes ({num_classes} model classes, "
                f"{len(data_names)} data classes{'; ' + shown if shown else ''}). Evaluate the model on the "
                "dataset it was finetuned on."
            )


def _versions() -> dict[str, str]:
    import transformers

    from .._version import __version__

    return {
        "mimir_hf": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "autoattack": _autoattack_package_version(),
        "numpy": np.__version__,
    }


# ----------------------------------------------------------------------------------------------
# the evaluation


def _zero_margin_gradient(model: LogitsModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from ..attacks import margin

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = margin(model(x), y).sum()
        (gradient,) = torch.autograd.grad(loss, [x], allow_unused=True)
    if gradient is None:
        return torch.ones(x.shape[0], dtype=torch.bool)
    return (gradient.flatten(1).abs().amax(dim=1) == 0).cpu()


def evaluate_robustness(
    model: str | Path | nn.Module,
    data: Any = "builtin:digits",
    *,
    labels: torch.Tensor | None = None,
    split: str = "test",
    dataset_config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int | None = None,
    eval_crop_fraction: float | None = None,
    num_samples: int | None = None,
    attacks: Sequence[str] | str = DEFAULT_ATTACKS,
    epsilon: float | str = 8 / 255,
    step_size: float | str | None = None,
    restarts: int = 1,
    epsilon_sweep: Sequence[float | str] = DEFAULT_EPSILON_SWEEP,
    sweep_attack: str = "pgd-20",
    cw_steps: int = 30,
    adaptive_steps: int = 100,
    mi_weight: float = 1e-5,
    autoattack_version: str = "standard",
    autoattack_attacks: Sequence[str] = ("apgd-ce", "apgd-t", "fab-t", "square"),
    square_queries: int = 5000,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    output_dir: str | Path | None = None,
    image_processor: Any = None,
    check_tolerance: float = 0.005,
    large_epsilon_max_accuracy: float = 0.05,
    progress: bool = True,
    plot: bool = True,
    dataset_name: str | None = None,
) -> RobustnessReport:
    """Measure the L∞ robustness of an image classifier and check the measurement for gradient masking.

    Args:
        model: an `nn.Module` (a transformers classifier or any module returning logits), a local
            directory written by `save_pretrained`, or a Hub id (`AutoModelForImageClassification`).
        data: a data source understood by `mimir_hf.data.load_image_dataset` ("builtin:digits", a Hub
            dataset name, an image folder, a `.npz`), a `datasets.Dataset` with `image`/`label`
            columns, or a pixel tensor (B, C, H, W) in [0, 1] together with `labels`.
        num_samples: evaluate the first N samples of the split (RobustBench style); None for all.
        attacks: names (see `mimir_hf.evaluation.attacks`), e.g. ["clean", "pgd-20", "autoattack"].
        epsilon: the headline L∞ budget in [0, 1] units (a float or "8/255").
        step_size: PGD step α (default ε/4, i.e. 2/255 at 8/255).
        epsilon_sweep: extra budgets at which `sweep_attack` runs (the accuracy-vs-ε curve and the
            monotonicity and large-ε checks); () for none.
        output_dir: where to write robustness.json, per_sample.npz, autoattack.log and the curve; None
            to write nothing.
        check_tolerance: accuracy slack for the consistency checks (at least one sample).

    Returns:
        A `RobustnessReport` (its `failed_checks` lists any gradient-masking check that fired).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 (or None for the whole split), got {num_samples}.")
    settings = AttackSettings(
        epsilon=parse_budget(epsilon),
        step_size=None if step_size is None else parse_budget(step_size, "step_size"),
        restarts=restarts,
        cw_steps=cw_steps,
        adaptive_steps=adaptive_steps,
        mi_weight=mi_weight,
        autoattack_version=autoattack_version,
        autoattack_attacks=tuple(autoattack_attacks),
        square_queries=square_queries,
        seed=seed,
    )
    specs = plan_attacks(attacks, settings, epsilon_sweep, sweep_attack)

    wrapper, model_name, processor = load_classifier(model, device=device, image_processor=image_processor)
    device = next((p.device for p in wrapper.parameters()), torch.device("cpu"))

    data_names: list[str] | None = None
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise ValueError("Pass `labels` together with a pixel tensor.")
        x_all, y_all = data.detach().float().cpu(), torch.as_tensor(labels).long().cpu()
        if num_samples is not None:
            x_all, y_all = x_all[:num_samples], y_all[:num_samples]
        if x_all.shape[0] != y_all.shape[0]:
            raise ValueError(f"{x_all.shape[0]} images but {y_all.shape[0]} labels.")
        source_name = dataset_name or "tensor"
    else:
        x_all, y_all, data_names = _load_split(
            data, split=split, dataset_config=dataset_config, image_column=image_column, label_column=label_column,
            image_size=_image_size(wrapper, processor, image_size), num_samples=num_samples, batch_size=batch_size,
            crop_fraction=eval_crop_fraction,
        )
        if dataset_name is None:
            info = getattr(data, "info", None)
            dataset_name = str(data) if isinstance(data, (str, Path)) else (getattr(info, "dataset_name", None) or "dataset")
        source_name = dataset_name
    check_pixel_values(x_all, getattr(wrapper, "num_channels", None), name="evaluation images")
    with torch.no_grad(), preserve_mode(wrapper, "eval"):
        num_classes = int(wrapper(x_all[:1].to(device)).shape[1])
    _check_labels(wrapper, y_all, num_classes, data_names)

    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / AUTOATTACK_LOG).unlink(missing_ok=True)
    log_path = (out / AUTOATTACK_LOG) if out is not None and any(s.library == "autoattack" for s in specs) else None

    from tqdm.auto import tqdm

    n = x_all.shape[0]
    results: dict[str, AttackResult] = {}
    clean_correct = np.ones(n, dtype=bool)
    zero_gradient = np.zeros(n, dtype=bool)
    aa_warnings: list[str] = []
    logger.info("Evaluating %s on %d samples: %s", model_name, n, ", ".join(s.name for s in specs))
    with capture_autoattack_log(log_path) as collected, preserve_mode(wrapper, "eval"), torch.no_grad():
        for spec in specs:
            attack = Attack(spec)
            generator = torch.Generator(device=device).manual_seed(seed)
            correct = np.zeros(n, dtype=bool)
            predictions = np.full(n, -1, dtype=np.int64)
            max_perturbation = 0.0
            start = time.perf_counter()
            with tqdm(total=n, desc=f"{spec.name:>18}", unit="img", disable=not progress, leave=True) as bar:
                for begin in range(0, n, batch_size):
                    end = min(begin + batch_size, n)
                    todo = np.flatnonzero(clean_correct[begin:end]) + begin
                    if todo.size:
                        x = x_all[todo].to(device)
                        y = y_all[todo].to(device)
                        if spec.kind == "clean":
                            zero_gradient[todo] = _zero_margin_gradient(wrapper, x, y).numpy()
                        adversarial = attack.run(wrapper, x, y, generator=generator)
                        max_perturbation = max(max_perturbation, float((adversarial - x).abs().max()))
                        if adversarial.min() < -1e-6 or adversarial.max() > 1 + 1e-6:
                            max_perturbation = float("inf")
                        predicted = wrapper(adversarial).argmax(dim=1)
                        predictions[todo] = predicted.cpu().numpy()
                        correct[todo] = (predicted == y).cpu().numpy()
                    bar.update(end - begin)
                    bar.set_postfix(acc=f"{100 * correct[:end].mean():.1f}%")
            if spec.kind == "clean":
                clean_correct = correct.copy()
            results[spec.name] = AttackResult(
                spec=spec,
                correct=correct,
                predictions=predictions,
                wall_time_seconds=time.perf_counter() - start,
                max_perturbation=max_perturbation if spec.kind != "clean" else 0.0,
                library_version=_autoattack_package_version() if spec.library == "autoattack" else _versions()["mimir_hf"],
            )
            logger.info("%s: %.2f%%", spec.name, 100 * results[spec.name].accuracy)
        aa_warnings = list(dict.fromkeys(collected))

    labels_np = y_all.numpy()
    checks, skipped = run_checks(
        results,
        epsilon=settings.epsilon,
        labels=labels_np,
        zero_gradient=zero_gradient[clean_correct] if clean_correct.any() else zero_gradient,
        tolerance=check_tolerance,
        large_epsilon=LARGE_EPSILON,
        large_epsilon_max_accuracy=large_epsilon_max_accuracy,
    )
    report = RobustnessReport(
        model=model_name,
        dataset=source_name,
        split=split if not isinstance(data, torch.Tensor) else "given",
        epsilon=settings.epsilon,
        seed=seed,
        labels=labels_np,
        results=results,
        indices=np.arange(n),
        normalization=wrapper.normalization,
        versions=_versions(),
        checks=checks,
        skipped_checks=skipped,
        autoattack_warnings=aa_warnings,
        batch_size=batch_size,
        class_names=data_names,
    )
    for check in report.failed_checks:
        message = f"GRADIENT-MASKING CHECK FAILED: {check.name}: {check.detail}"
        logger.warning(message)
        warnings.warn(message, GradientMaskingWarning, stacklevel=2)
    if out is not None:
        report.save(out, plot=plot)
    return report


def evaluate_from_args(eval_args: Any, data_args: Any, *, progress: bool | None = None) -> RobustnessReport:
    """Run `evaluate_robustness` from the recipe's `EvaluationArguments` and `DataArguments`."""
    if getattr(eval_args, "num_threads", None):
        torch.set_num_threads(int(eval_args.num_threads))
    return evaluate_robustness(
        eval_args.model_name_or_path,
        data_args.dataset,
        split=data_args.eval_split,
        dataset_config=data_args.dataset_config,
        image_column=data_args.image_column,
        label_column=data_args.label_column,
        image_size=data_args.image_size,
        eval_crop_fraction=data_args.eval_crop_fraction,
        num_samples=data_args.max_eval_samples,
        attacks=eval_args.attacks,
        epsilon=eval_args.epsilon,
        step_size=eval_args.step_size,
        restarts=eval_args.restarts,
        epsilon_sweep=eval_args.epsilon_sweep,
        sweep_attack=eval_args.sweep_attack,
        cw_steps=eval_args.cw_steps,
        adaptive_steps=eval_args.adaptive_steps,
        mi_weight=eval_args.mi_weight,
        autoattack_version=eval_args.autoattack_version,
        autoattack_attacks=eval_args.autoattack_attacks,
        square_queries=eval_args.square_queries,
        batch_size=eval_args.batch_size,
        seed=eval_args.seed,
        device=eval_args.device,
        output_dir=eval_args.output_dir,
        check_tolerance=eval_args.check_tolerance,
        large_epsilon_max_accuracy=eval_args.large_epsilon_max_accuracy,
        progress=(not eval_args.no_progress) if progress is None else progress,
    )
