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
from ..validation import check_pixel_values
from .attack_specs import DEFAULT_ATTACKS, AttackSettings, AttackSpec, format_epsilon, parse_attack_name, parse_budget
from .attacks import Attack
from .autoattack import autoattack_version as _autoattack_package_version
from .autoattack import capture_autoattack_log
from .autoattack_suite import STANDARD_AUTOATTACK
from .checks import LARGE_EPSILON, run_checks
from .plots import plot_accuracy_vs_epsilon
from ..artefacts import AUTOATTACK_LOG
from .robustness_report import RobustnessReport
from .results import AttackResult
from .sharding import current_shard, gather_records, wait_for_everyone
from .state import STATE_DIRNAME, BatchRecord, EvaluationState, batch_seed, fingerprint
from .streaming import EvaluationData, prepare_evaluation_data
from .loading import check_labels, classifier_image_size, load_classifier, weights_fingerprint
from .wrapper import LogitsModel

__all__ = [
    "DEFAULT_EPSILON_SWEEP",
    "DEFAULT_L2_EPSILON_SWEEP",
    "GradientMaskingWarning",
    "evaluate_robustness",
    "plan_attacks",
]

logger = logging.getLogger(__name__)

DEFAULT_EPSILON_SWEEP = (1 / 255, 2 / 255, 4 / 255, 16 / 255, 64 / 255)
DEFAULT_L2_EPSILON_SWEEP = (0.125, 0.25, 1.0, 8.0)
"""L2 radii for the ε-curve and the checks; 8.0 is the large budget at which accuracy must be near zero."""


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
    sweep = [parse_budget(e, "epsilon_sweep value", norm=settings.norm) for e in epsilon_sweep]
    if sweep:
        base = parse_attack_name(sweep_attack, settings)
        if base.kind == "clean":
            raise ValueError("sweep_attack must be an attack, not 'clean'.")
        for eps in sweep:
            if abs(eps - settings.epsilon) <= 1e-9:
                if all(s.name != base.name for s in specs):
                    specs.append(base)
            else:
                specs.append(parse_attack_name(f"{base.name.split('@')[0]}@eps={format_epsilon(eps, settings.norm)}", settings))
    unique: dict[str, AttackSpec] = {}
    for spec in specs:
        unique.setdefault(spec.name, spec)
    clean = unique.pop("clean", None) or parse_attack_name("clean", settings)
    return [clean, *unique.values()]


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


def _state_description(
    model_name: str, weights: str, data: EvaluationData, split: str, specs: list[AttackSpec], batch_size: int, seed: int
) -> dict[str, Any]:
    """What decides every batch's result: a resumed run must match it exactly."""
    return {
        "model": model_name,
        "weights": weights,
        "dataset": data.source_name,
        "split": split,
        "num_samples": len(data),
        "indices": fingerprint({"indices": data.indices.tolist(), "labels": data.labels.tolist()}),
        "batch_size": batch_size,
        "seed": seed,
        "attacks": [
            {
                "name": s.name, "kind": s.kind, "epsilon": s.epsilon, "steps": s.steps, "step_size": s.step_size,
                "restarts": s.restarts, "seed": s.seed, "library": s.library, "norm": s.norm,
                "options": dict(s.options),
            }
            for s in specs
        ],
    }


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
                delta = (adversarial - xs).flatten(1)
                size_of = delta.abs().amax(dim=1) if spec.norm == "Linf" else delta.norm(dim=1)
                max_perturbation = float(size_of.max())
                if adversarial.min() < -1e-6 or adversarial.max() > 1 + 1e-6:
                    max_perturbation = float("inf")
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
    return BatchRecord(index=index, attacks=outcome, zero_gradient=zero_gradient.tolist())


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
            extra["components"] = _component_results(details, clean_count, correct.size)
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


def _component_results(details: list[dict[str, Any]], clean_count: int, n: int) -> list[dict[str, Any]]:
    """AutoAttack's cascade, per component over all images: points attacked and broken, time, accuracy after."""
    order: list[str] = []
    totals: dict[str, dict[str, float]] = {}
    for batch in details:
        for name, values in (batch.get("components") or {}).items():
            if name not in totals:
                order.append(name)
                totals[name] = {"attacked": 0, "broken": 0, "seconds": 0.0}
            for key in totals[name]:
                totals[name][key] += values[key]
    standing = clean_count
    rows = []
    for name in order:
        standing -= int(totals[name]["broken"])
        rows.append({
            "name": name,
            "attacked": int(totals[name]["attacked"]),
            "broken": int(totals[name]["broken"]),
            "robust_accuracy_after": standing / n if n else float("nan"),
            "wall_time_seconds": round(float(totals[name]["seconds"]), 3),
        })
    return rows


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
    epsilon_sweep: Sequence[float | str] | None = None,
    sweep_attack: str = "pgd-20",
    cw_steps: int = 30,
    adaptive_steps: int = 100,
    mi_weight: float = 1e-5,
    autoattack_version: str = "standard",
    autoattack_attacks: Sequence[str] = STANDARD_AUTOATTACK,
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
    indices: Sequence[int] | None = None,
    resume: bool = True,
    norm: str = "Linf",
) -> RobustnessReport:
    """Measure the L∞ robustness of an image classifier and check the measurement for gradient masking.

    Args:
        model: an `nn.Module` (a transformers classifier or any module returning logits), a local
            directory written by `save_pretrained`, or a Hub id (`AutoModelForImageClassification`).
        data: a data source understood by `mimir_hf.data.load_image_dataset` ("builtin:digits", a Hub
            dataset name, an image folder, a `.npz`), a `datasets.Dataset` with `image`/`label`
            columns, or a pixel tensor (B, C, H, W) in [0, 1] together with `labels`.
        num_samples: evaluate the first N samples of the split (RobustBench style); None for all.
        attacks: names (see `mimir_hf.evaluation.attack_specs`), e.g. ["clean", "pgd-20", "autoattack"].
        epsilon: the headline L∞ budget in [0, 1] units (a float or "8/255").
        step_size: PGD step α (default ε/4, i.e. 2/255 at 8/255).
        epsilon_sweep: extra budgets at which `sweep_attack` runs (the accuracy-vs-ε curve and the
            monotonicity and large-ε checks); () for none; None for the norm's default
            (`DEFAULT_EPSILON_SWEEP`, `DEFAULT_L2_EPSILON_SWEEP`).
        norm: the threat model, "Linf" (ε per pixel, the default) or "L2" (ε on each image's Euclidean
            norm in [0, 1] pixel units; RobustBench's CIFAR-10 L2 budget is 0.5).
        output_dir: where to write robustness.json, per_sample.npz, autoattack.log and the curve; None
            to write nothing.
        check_tolerance: accuracy slack for the consistency checks (at least one sample).
        indices: evaluate these positions of the split, in this order (RobustBench's ImageNet list);
            `num_samples` then keeps the first N of them.
        resume: with an `output_dir`, every finished batch is kept in `<output_dir>/eval_state/`; a
            rerun of the same evaluation continues after the last finished batch (False: start over).

    Under `accelerate launch` with several processes, each process attacks every world-size-th batch
    and the main process writes the gathered report (identical to a one-process run but for the times).

    Returns:
        A `RobustnessReport` (its `failed_checks` lists any gradient-masking check that fired).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 (or None for the whole split), got {num_samples}.")
    if epsilon_sweep is None:
        epsilon_sweep = DEFAULT_L2_EPSILON_SWEEP if norm == "L2" else DEFAULT_EPSILON_SWEEP
    settings = AttackSettings(
        norm=norm,
        epsilon=parse_budget(epsilon, norm=norm),
        step_size=None if step_size is None else parse_budget(step_size, "step_size", norm=norm),
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

    shard = current_shard()
    if device is None and shard.device is not None:
        device = shard.device
    wrapper, model_name, processor = load_classifier(model, device=device, image_processor=image_processor)
    device = next((p.device for p in wrapper.parameters()), torch.device("cpu"))

    evaluation_data = prepare_evaluation_data(
        data, labels=labels, split=split, dataset_config=dataset_config, image_column=image_column,
        label_column=label_column,
        image_size=None if isinstance(data, torch.Tensor) else classifier_image_size(wrapper, processor, image_size),
        num_samples=num_samples, indices=indices, crop_fraction=eval_crop_fraction, dataset_name=dataset_name,
    )
    n = len(evaluation_data)
    first, _ = next(evaluation_data.batches([[0]]))
    check_pixel_values(first, getattr(wrapper, "num_channels", None), name="evaluation images")
    with torch.no_grad(), preserve_mode(wrapper, "eval"):
        num_classes = int(wrapper(first.to(device)).shape[1])
    check_labels(wrapper, torch.as_tensor(evaluation_data.labels), num_classes, evaluation_data.class_names)

    weights = weights_fingerprint(wrapper)
    out = Path(output_dir) if output_dir is not None else None
    batches = [list(range(begin, min(begin + batch_size, n))) for begin in range(0, n, batch_size)]
    mine = shard.batches(len(batches))
    state = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        state = EvaluationState(
            out / STATE_DIRNAME,
            _state_description(model_name, weights, evaluation_data, split, specs, batch_size, seed),
            resume=resume,
            owned=mine,
        )
    records: dict[int, BatchRecord] = {}
    for index in mine:
        record = state.load(index) if state is not None else None
        if record is not None:
            records[index] = record
    todo = [index for index in mine if index not in records]
    log_path = None
    if out is not None and any(s.library == "autoattack" for s in specs):
        log_path = out / (AUTOATTACK_LOG if shard.is_main else f"autoattack.rank{shard.rank}.log")
        if not records:
            log_path.unlink(missing_ok=True)
    if records:
        logger.info("Resuming from %s: %d of %d batches already done.", state.directory, len(records), len(mine))

    from tqdm.auto import tqdm

    logger.info("Evaluating %s on %d samples: %s", model_name, n, ", ".join(s.name for s in specs))
    with capture_autoattack_log(log_path) as collected, preserve_mode(wrapper, "eval"), torch.no_grad():
        total = sum(len(batches[i]) for i in todo)
        with tqdm(total=total, desc="evaluating", unit="img", disable=not (progress and shard.is_main)) as bar:
            for index, (x, y) in zip(todo, evaluation_data.batches([batches[i] for i in todo])):
                check_pixel_values(x, getattr(wrapper, "num_channels", None), name="evaluation images")
                record = _evaluate_batch(wrapper, specs, x.to(device), y.to(device), index, seed, bar)
                if state is not None:
                    state.save(record)
                records[index] = record
                bar.update(x.shape[0])
        aa_warnings = list(dict.fromkeys(collected))

    gathered = {r.index: r for r in gather_records(list(records.values()), shard)}
    missing = [i for i in range(len(batches)) if i not in gathered]
    if missing:  # pragma: no cover - a process lost its batches
        raise RuntimeError(f"Batches {missing[:10]} were evaluated by no process.")
    ordered = [gathered[i] for i in range(len(batches))]
    results, zero_gradient = _assemble(specs, ordered)
    clean_correct = next(r.correct for r in results.values() if r.spec.kind == "clean")
    for name, result in results.items():
        logger.info("%s: %.2f%%", name, 100 * result.accuracy)

    labels_np = evaluation_data.labels
    checks, skipped = run_checks(
        results,
        epsilon=settings.epsilon,
        labels=labels_np,
        zero_gradient=zero_gradient[clean_correct] if clean_correct.any() else zero_gradient,
        tolerance=check_tolerance,
        large_epsilon=LARGE_EPSILON[norm],
        norm=norm,
        large_epsilon_max_accuracy=large_epsilon_max_accuracy,
    )
    report = RobustnessReport.from_results(
        model=model_name,
        dataset=evaluation_data.source_name,
        split=split if not isinstance(data, torch.Tensor) else "given",
        epsilon=settings.epsilon,
        seed=seed,
        labels=labels_np,
        results=results,
        indices=evaluation_data.indices,
        normalization=wrapper.normalization,
        versions=_versions(),
        checks=checks,
        skipped_checks=skipped,
        autoattack_warnings=aa_warnings,
        batch_size=batch_size,
        class_names=evaluation_data.class_names,
        preprocessing=evaluation_data.preprocessing,
        num_processes=shard.world_size,
        norm=norm,
        weights_fingerprint=weights,
    )
    for check in report.failed_checks:
        message = f"GRADIENT-MASKING CHECK FAILED: {check.name}: {check.detail}"
        logger.warning(message)
        warnings.warn(message, GradientMaskingWarning, stacklevel=2)
    if out is not None and shard.is_main:
        report.save(out, curve=plot_accuracy_vs_epsilon if plot else None)
    wait_for_everyone(shard)
    return report
