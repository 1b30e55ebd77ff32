"""`evaluate_robustness`: load a classifier and a data split, run the planned attacks, check, report."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attacks import margin, preserve_mode
from ..validation import check_pixel_values
from .attack_specs import AttackSettings, AttackSpec, plan_attacks
from .attacks import Attack
from .autoattack import autoattack_version as _autoattack_package_version
from ..artefacts import AUTOATTACK_LOG
from .autoattack import capture_autoattack_log, component_results
from .checks import LARGE_EPSILON, run_checks
from .loading import check_labels, classifier_image_size, load_classifier, weights_fingerprint
from .plots import plot_accuracy_vs_epsilon
from .results import AttackResult
from .robustness_report import RobustnessReport
from .sharding import ProcessShard, current_shard, gather_records, wait_for_everyone
from .state import STATE_DIRNAME, BatchRecord, EvaluationState, batch_seed, state_description
from .streaming import EvaluationData, prepare_evaluation_data
from .wrapper import LogitsModel

__all__ = ["GradientMaskingWarning", "evaluate_robustness"]

logger = logging.getLogger(__name__)


class GradientMaskingWarning(UserWarning):
    """A gradient-masking sanity check failed: the robust accuracy is probably overestimated."""


def evaluate_robustness(
    model: str | Path | nn.Module,
    data: Any = "builtin:digits",
    settings: AttackSettings | None = None,
    *,
    labels: torch.Tensor | None = None,
    split: str = "test",
    dataset_config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int | None = None,
    eval_crop_fraction: float | None = None,
    num_samples: int | None = None,
    indices: list[int] | None = None,
    dataset_name: str | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    output_dir: str | Path | None = None,
    image_processor: Any = None,
    check_tolerance: float = 0.005,
    large_epsilon_max_accuracy: float = 0.05,
    progress: bool = True,
    plot: bool = True,
    resume: bool = True,
    **options: Any,
) -> RobustnessReport:
    """Measure the L∞ or L2 robustness of an image classifier and check the measurement for gradient masking.

    Args:
        model: an `nn.Module` (a transformers classifier or any module returning logits), a local
            directory written by `save_pretrained`, or a Hub id (`AutoModelForImageClassification`).
        data: a data source understood by `mimir_hf.data.load_image_dataset` ("builtin:digits", a Hub
            dataset name, an image folder, a `.npz`), a `datasets.Dataset` with `image`/`label`
            columns, or a pixel tensor (B, C, H, W) in [0, 1] together with `labels`.
        settings: the attacks, the threat model and the attacks' hyper-parameters (`AttackSettings`).
        **options: instead of `settings`, its fields by name: `attacks=["clean", "pgd-20"],
            epsilon="8/255", norm="L2", epsilon_sweep=()`... (never both).
        num_samples: evaluate the first N samples of the split (RobustBench style); None for all.
        indices: evaluate these positions of the split, in this order (RobustBench's ImageNet list);
            `num_samples` then keeps the first N of them.
        output_dir: where to write robustness.json, per_sample.npz, autoattack.log and the curve; None
            to write nothing.
        check_tolerance: accuracy slack for the consistency checks (at least one sample).
        resume: with an `output_dir`, every finished batch is kept in `<output_dir>/eval_state/`; a
            rerun of the same evaluation continues after the last finished batch (False: start over).

    Under `accelerate launch` with several processes, each process attacks every world-size-th batch
    and the main process writes the gathered report (identical to a one-process run but for the times).

    Returns:
        A `RobustnessReport` (its `failed_checks` lists any gradient-masking check that fired).

    Half of its length is the signature and this documentation; the steps (load, attack the batches,
    assemble, check, save) are functions of their own.
    """
    settings = _settings(settings, options)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 (or None for the whole split), got {num_samples}.")
    specs = plan_attacks(settings)

    shard = current_shard()
    if device is None and shard.device is not None:
        device = shard.device
    wrapper, model_name, processor = load_classifier(model, device=device, image_processor=image_processor)
    evaluation_data = prepare_evaluation_data(
        data, labels=labels, split=split, dataset_config=dataset_config, image_column=image_column,
        label_column=label_column,
        image_size=None if isinstance(data, torch.Tensor) else classifier_image_size(wrapper, processor, image_size),
        num_samples=num_samples, indices=indices, crop_fraction=eval_crop_fraction, dataset_name=dataset_name,
    )
    _check_data(wrapper, evaluation_data)

    weights = weights_fingerprint(wrapper)
    out = Path(output_dir) if output_dir is not None else None
    n = len(evaluation_data)
    batches = [list(range(begin, min(begin + batch_size, n))) for begin in range(0, n, batch_size)]
    mine = shard.batches(len(batches))
    state = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        description = state_description(model_name, weights, evaluation_data, split, specs, batch_size, settings.seed)
        state = EvaluationState(out / STATE_DIRNAME, description, resume=resume, owned=mine)
    logger.info("Evaluating %s on %d samples: %s", model_name, n, ", ".join(s.name for s in specs))
    records, autoattack_warnings = _attack_batches(
        wrapper, specs, evaluation_data, batches, mine, state, shard, out, settings.seed, progress
    )
    results, zero_gradient = _assemble(specs, _gathered(records, len(batches), shard))
    report = _checked_report(
        results, zero_gradient, settings, evaluation_data,
        model=model_name,
        split=split if not isinstance(data, torch.Tensor) else "given",
        normalization=wrapper.normalization,
        autoattack_warnings=autoattack_warnings,
        batch_size=batch_size,
        num_processes=shard.world_size,
        weights_fingerprint=weights,
        check_tolerance=check_tolerance,
        large_epsilon_max_accuracy=large_epsilon_max_accuracy,
    )
    for check in report.failed_checks:
        message = f"GRADIENT-MASKING CHECK FAILED: {check.name}: {check.detail}"
        logger.warning(message)
        warnings.warn(message, GradientMaskingWarning, stacklevel=2)
    if out is not None and shard.is_main:
        report.save(out, curve=plot_accuracy_vs_epsilon if plot else None)
    wait_for_everyone(shard)
    return report


def _settings(settings: AttackSettings | None, options: dict[str, Any]) -> AttackSettings:
    """`settings`, or the `AttackSettings` built from the options given by name; an unknown name is an error."""
    if settings is not None:
        if options:
            raise TypeError(f"Give the attack options in `settings` or by name, not both (got {sorted(options)}).")
        return settings
    known = {f.name for f in dataclasses.fields(AttackSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        hints = [name + "".join(f" (did you mean {m!r}?)" for m in difflib.get_close_matches(name, known, n=1))
                 for name in unknown]
        raise TypeError(f"evaluate_robustness() got unknown option(s): {', '.join(hints)}.")
    return AttackSettings(**options)


def _checked_report(
    results: dict[str, AttackResult],
    zero_gradient: np.ndarray,
    settings: AttackSettings,
    data: EvaluationData,
    *,
    check_tolerance: float,
    large_epsilon_max_accuracy: float,
    **record: Any,
) -> RobustnessReport:
    """The report of the assembled results, with the gradient-masking checks run on them."""
    clean_correct = next(r.correct for r in results.values() if r.spec.kind == "clean")
    for name, result in results.items():
        logger.info("%s: %.2f%%", name, 100 * result.accuracy)
    checks, skipped = run_checks(
        results,
        epsilon=settings.epsilon,
        labels=data.labels,
        zero_gradient=zero_gradient[clean_correct] if clean_correct.any() else zero_gradient,
        tolerance=check_tolerance,
        large_epsilon=LARGE_EPSILON[settings.norm],
        norm=settings.norm,
        large_epsilon_max_accuracy=large_epsilon_max_accuracy,
    )
    return RobustnessReport.from_results(
        dataset=data.source_name,
        epsilon=settings.epsilon,
        seed=settings.seed,
        labels=data.labels,
        results=results,
        indices=data.indices,
        versions=_versions(),
        checks=checks,
        skipped_checks=skipped,
        class_names=data.class_names,
        preprocessing=data.preprocessing,
        norm=settings.norm,
        **record,
    )


def _check_data(wrapper: LogitsModel, data: EvaluationData) -> None:
    """Pixel range, channels and labels against the model, on the first image, before any attack runs."""
    first, _ = next(data.batches([[0]]))
    check_pixel_values(first, getattr(wrapper, "num_channels", None), name="evaluation images")
    device = next((p.device for p in wrapper.parameters()), torch.device("cpu"))
    with torch.no_grad(), preserve_mode(wrapper, "eval"):
        num_classes = int(wrapper(first.to(device)).shape[1])
    check_labels(wrapper, torch.as_tensor(data.labels), num_classes, data.class_names)


def _attack_batches(
    wrapper: LogitsModel,
    specs: list[AttackSpec],
    data: EvaluationData,
    batches: list[list[int]],
    mine: list[int],
    state: EvaluationState | None,
    shard: ProcessShard,
    out: Path | None,
    seed: int,
    progress: bool,
) -> tuple[dict[int, BatchRecord], list[str]]:
    """This process's batches (those a resumed state holds, then the rest), and AutoAttack's warnings."""
    records = {index: record for index in mine if state is not None and (record := state.load(index)) is not None}
    todo = [index for index in mine if index not in records]
    log_path = None
    if out is not None and any(s.library == "autoattack" for s in specs):
        log_path = out / (AUTOATTACK_LOG if shard.is_main else f"autoattack.rank{shard.rank}.log")
        if not records:
            log_path.unlink(missing_ok=True)
    if records:
        logger.info("Resuming from %s: %d of %d batches already done.", state.directory, len(records), len(mine))

    from tqdm.auto import tqdm

    device = next((p.device for p in wrapper.parameters()), torch.device("cpu"))
    with capture_autoattack_log(log_path) as collected, preserve_mode(wrapper, "eval"), torch.no_grad():
        total = len(todo) * len(specs)  # one tick per attack on a batch: one batch of a few slow attacks still moves
        with tqdm(total=total, desc="evaluating", unit="attack", disable=not (progress and shard.is_main)) as bar:
            for index, (x, y) in zip(todo, data.batches([batches[i] for i in todo])):
                check_pixel_values(x, getattr(wrapper, "num_channels", None), name="evaluation images")
                record = _evaluate_batch(wrapper, specs, x.to(device), y.to(device), index, seed, bar)
                if state is not None:
                    state.save(record)
                records[index] = record
        return records, list(dict.fromkeys(collected))


def _gathered(records: dict[int, BatchRecord], num_batches: int, shard: ProcessShard) -> list[BatchRecord]:
    """Every process's records, in batch order."""
    gathered = {r.index: r for r in gather_records(list(records.values()), shard)}
    missing = [i for i in range(num_batches) if i not in gathered]
    if missing:  # pragma: no cover - a process lost its batches
        raise RuntimeError(f"Batches {missing[:10]} were evaluated by no process.")
    return [gathered[i] for i in range(num_batches)]


def _evaluate_batch(
    wrapper: LogitsModel,
    specs: list[AttackSpec],
    x: torch.Tensor,
    y: torch.Tensor,
    index: int,
    seed: int,
    bar: Any,
) -> BatchRecord:
    """Every attack on one batch; the batch's seed makes the result independent of who runs it, and when."""
    size = x.shape[0]
    clean_correct = np.ones(size, dtype=bool)
    zero_gradient = np.zeros(size, dtype=bool)
    outcome: dict[str, dict[str, Any]] = {}
    for spec in specs:
        bar.set_postfix(batch=index, attack=spec.name)
        generator = torch.Generator(device=x.device).manual_seed(batch_seed(seed, index))
        correct = np.zeros(size, dtype=bool)
        predictions = np.full(size, -1, dtype=np.int64)
        max_perturbation = 0.0
        details: dict[str, Any] = {}
        start = time.perf_counter()
        todo = np.flatnonzero(clean_correct)
        if todo.size:
            selection = torch.as_tensor(todo, device=x.device)
            xs, ys = x[selection], y[selection]
            if spec.kind == "clean":
                zero_gradient[todo] = _zero_margin_gradient(wrapper, xs, ys).numpy()
            adversarial = Attack(spec).run(wrapper, xs, ys, generator=generator, details=details)
            if spec.kind != "clean":
                max_perturbation = _max_perturbation(spec, xs, adversarial)
            predicted = wrapper(adversarial).argmax(dim=1)
            predictions[todo] = predicted.cpu().numpy()
            correct[todo] = (predicted == ys).cpu().numpy()
        if spec.kind == "pgd-mi":
            details.setdefault("mi_dropped_steps", 0)
        if spec.kind == "clean":
            clean_correct = correct.copy()
        outcome[spec.name] = {
            "correct": correct.tolist(),
            "predictions": predictions.tolist(),
            "max_perturbation": max_perturbation,
            "seconds": time.perf_counter() - start,
            "details": details,
        }
        bar.update(1)
    return BatchRecord(index=index, attacks=outcome, zero_gradient=zero_gradient.tolist())


def _max_perturbation(spec: AttackSpec, clean: torch.Tensor, adversarial: torch.Tensor) -> float:
    """The largest perturbation in the attack's norm; infinite when x′ left the [0, 1] box."""
    if adversarial.min() < -1e-6 or adversarial.max() > 1 + 1e-6:
        return float("inf")
    delta = (adversarial - clean).flatten(1)
    size_of = delta.abs().amax(dim=1) if spec.norm == "Linf" else delta.norm(dim=1)
    return float(size_of.max())


def _zero_margin_gradient(model: LogitsModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = margin(model(x), y).sum()
        (gradient,) = torch.autograd.grad(loss, [x], allow_unused=True)
    if gradient is None:
        return torch.ones(x.shape[0], dtype=torch.bool)
    return (gradient.flatten(1).abs().amax(dim=1) == 0).cpu()


def _assemble(specs: list[AttackSpec], records: list[BatchRecord]) -> tuple[dict[str, AttackResult], np.ndarray]:
    """The per-attack results over all batches (in evaluation order), and the per-sample zero-gradient flags."""
    version = _versions()["mimir_hf"]
    results: dict[str, AttackResult] = {}
    clean_count = 0
    for spec in specs:
        parts = [r.attacks[spec.name] for r in records]
        correct = np.concatenate([np.asarray(p["correct"], dtype=bool) for p in parts])
        if spec.kind == "clean":
            clean_count = int(correct.sum())
        extra: dict[str, Any] = {}
        details = [p.get("details") or {} for p in parts]
        if spec.kind == "pgd-mi":
            extra["mi_dropped_steps"] = sum(int(d.get("mi_dropped_steps", 0)) for d in details)
        for key in ("attacks_run", "note"):
            value = next((d[key] for d in details if d.get(key)), None)
            if value is not None:
                extra[key] = value
        if spec.kind == "autoattack":
            extra["components"] = component_results(details, clean_count, correct.size)
        results[spec.name] = AttackResult(
            spec=spec,
            correct=correct,
            predictions=np.concatenate([np.asarray(p["predictions"], dtype=np.int64) for p in parts]),
            wall_time_seconds=float(sum(p["seconds"] for p in parts)),
            max_perturbation=max((float(p["max_perturbation"]) for p in parts), default=0.0),
            library_version=_autoattack_package_version() if spec.library == "autoattack" else version,
            extra=extra,
        )
    zero_gradient = np.concatenate([np.asarray(r.zero_gradient, dtype=bool) for r in records])
    return results, zero_gradient


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
