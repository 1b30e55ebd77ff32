"""Our pretraining step against the authors' reference implementation, side by side.

    python benchmarks/compare_reference.py --reference /path/to/MIMIR            # ~4 min on 2 cores
    python benchmarks/compare_reference.py --reference /path/to/MIMIR --rounds 16 --batch_sizes 32 64
    python benchmarks/compare_reference.py --reference /path/to/MIMIR --profile   # + where the time goes
    python benchmarks/compare_reference.py --ours_only --smoke                   # our side only, no timm

`--reference` is a checkout of the authors' repository (xiaoyunxxy/MIMIR on GitHub); nothing of it is
copied here. It needs timm 0.9.x next to our package; see docs/benchmarks.md for the virtualenv.

What is compared, on the paper's CIFAR-10 ViT-T (32 px, patch 2, 192 wide, 12 blocks, 3 heads; the
MIMIR decoder 128 wide, 2 blocks, 16 heads), fp32, identical weights (ours copied into theirs) and the
same batches (one seeded batch per round, the same RNG seed before each implementation's step):

* MIMIR step, model level: our `craft_adversarial_pixels` + `MimirForPreTraining.forward` (nHSIC
  inside) + backward + AdamW, against the body of the reference's `train_one_epoch` with
  `--attack pgd_mae --mi_train hsic` (their `PGD_MAE`, their model, their `hsic_normalized_cca`,
  their loss scaler with its gradient norm, AdamW with timm's parameter groups).
* MIMIR step through `MimirTrainer.training_step`, plus what the Trainer's loop does after it
  (gradient clipping at `max_grad_norm`, the Trainer's own optimizer, `zero_grad`).
* The plain MAE step of each (no attack, no MI), model level and through the Trainer.

All kinds run interleaved in one process, in a rotated order each round, so that the load of a
shared machine hits them alike; figures are medians over rounds, ratios are medians of per-round
ratios. Each step is also split into attack / training forward (incl. MI) / backward / optimizer
(the end of the backward is the last parameter-gradient hook to fire). Before timing, one step of
each implementation runs from the same RNG state and the harness checks that the two compute the
same maths: adversarial images, reconstruction loss, nHSIC, and every parameter gradient.

Threads: 1 by default (`--threads`), set before torch starts, because the machine is shared; the
number is printed with the results. Every part is timed on two clocks: wall time, and the process's
CPU time, which stops while another program holds the core. With one thread on the CPU the CPU
clock gives the headline figures (`--clock`), because on a shared 2-core machine the wall time of
one step swings by 2-3x with other people's work; both are in the JSON. The output ends with one
JSON document (`--json` also writes it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    # The paper's CIFAR-10 ViT-T with MIMIR's small decoder (the reference's `mae_vit_ti`).
    "cifar-vit-t": {"image_size": 32, "patch_size": 2, "hidden_size": 192, "num_hidden_layers": 12,
                    "num_attention_heads": 3, "decoder_hidden_size": 128, "decoder_num_hidden_layers": 2,
                    "decoder_num_attention_heads": 16},
    # Seconds-long shape for the test suite.
    "smoke": {"image_size": 16, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
              "decoder_num_attention_heads": 4},
}
MASK_RATIO, EPSILON, STEP_SIZE, MI_WEIGHT, MI_SIGMA = 0.75, 8 / 255, 10 / 255, 1e-5, 5.0
# The reference's pretraining recipe (script/train_cifar10.sh, pretrain.py): blr 1.5e-4, wd 0.05, betas (0.9, 0.95).
BASE_LR, WEIGHT_DECAY, BETAS = 1.5e-4, 0.05, (0.9, 0.95)
KINDS_ALL = ("ours_mimir", "ref_mimir", "ours_mae", "ref_mae", "trainer_mimir", "trainer_mae")
PARTS = ("attack", "forward", "backward", "optimizer")
CLOCKS = ("cpu", "wall")
# Agreement tolerances: both sides run fp32 except our nHSIC (float64 solve vs their float32 inverse).
TOLERANCE = {"reconstruction_rel": 1e-4, "nhsic_rel": 2e-3, "gradient_rel": 1e-3, "adversarial_equal_fraction": 0.999}


# ---------------------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=None,
                        help="checkout of xiaoyunxxy/MIMIR on GitHub (needs timm); required unless --ours_only")
    parser.add_argument("--ours_only", action="store_true", help="time only our side (no reference, no timm)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, batch 4, 1 round: seconds, for tests")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cifar-vit-t")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[32])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timed rounds per batch size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (and OMP_NUM_THREADS)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda; both fp32")
    parser.add_argument("--clock", choices=["auto", *CLOCKS], default="auto",
                        help="clock of the headline figures (both are recorded): auto = cpu time with 1 thread on "
                             "the CPU (robust to other programs on a shared machine), wall time otherwise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="also profile one MIMIR step of each side (torch.profiler) and count host syncs")
    parser.add_argument("--profile_rows", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON results here")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check everything that can be checked before torch is imported."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.rounds, args.warmup = "smoke", 1, 0
        if args.batch_sizes == parser.get_default("batch_sizes"):
            args.batch_sizes = [4]
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if any(b < 2 for b in args.batch_sizes):
        parser.error(f"every batch size must be >= 2 (the nHSIC needs two samples), got {args.batch_sizes}")
    if args.ours_only:
        args.reference = None
    else:
        if args.reference is None:
            parser.error("--reference PATH (a checkout of xiaoyunxxy/MIMIR) is required unless --ours_only")
        args.reference = args.reference.expanduser().resolve()
        missing = [p for p in ("models/mae_vit.py", "MI/hsic.py", "pgd_mae/pgd_mae.py", "util/misc.py")
                   if not (args.reference / p).is_file()]
        if missing:
            parser.error(f"{args.reference} does not look like a MIMIR checkout: missing {', '.join(missing)}")
    return args


# ---------------------------------------------------------------------------------------------- reference side
def import_reference(path: Path) -> dict[str, Any]:
    """The reference's modules, with the shims its 2023 code needs on today's libraries (no file is edited)."""
    import numpy as np

    if not hasattr(np, "float"):  # util/pos_embed.py uses np.float, removed in NumPy 1.24
        np.float = float  # type: ignore[attr-defined]
    try:
        import timm  # noqa: F401
        import timm.optim.optim_factory as optim_factory
    except ImportError as error:
        raise SystemExit(f"The reference implementation needs timm (0.9.x); install it next to mimir-hf: {error}")
    sys.path.insert(0, str(path))
    try:
        from MI.hsic import hsic_normalized_cca
        from models import mae_vit
        from pgd_mae.pgd_mae import PGD_MAE
        from util.misc import NativeScalerWithGradNormCount
    finally:
        sys.path.remove(str(path))
    return {"mae_vit": mae_vit, "hsic_normalized_cca": hsic_normalized_cca, "PGD_MAE": PGD_MAE,
            "NativeScaler": NativeScalerWithGradNormCount, "param_groups_weight_decay": optim_factory.param_groups_weight_decay}


def build_reference_model(ref: dict[str, Any], shape: dict[str, int], device):
    import torch

    mae_vit = ref["mae_vit"]
    if shape == SHAPES["cifar-vit-t"]:  # their own factory, as pretrain.py builds it
        model = mae_vit.mae_vit_ti(norm_pix_loss=True, img_size=shape["image_size"], patch_size=shape["patch_size"])
    else:
        from functools import partial

        model = mae_vit.MaskedAutoencoderViT(
            img_size=shape["image_size"], patch_size=shape["patch_size"], embed_dim=shape["hidden_size"],
            depth=shape["num_hidden_layers"], num_heads=shape["num_attention_heads"],
            decoder_embed_dim=shape["decoder_hidden_size"], decoder_depth=shape["decoder_num_hidden_layers"],
            decoder_num_heads=shape["decoder_num_attention_heads"], mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), norm_pix_loss=True)
    return model.to(device).train()


def _normalise_our_key(key: str) -> str:
    """transformers renamed ViT-MAE's submodules in 5.x; accept both spellings."""
    for old, new in ((".encoder.layer.", ".layers."), ("attention.attention.query", "attention.q_proj"),
                     ("attention.attention.key", "attention.k_proj"), ("attention.attention.value", "attention.v_proj"),
                     ("attention.output.dense", "attention.o_proj"), ("intermediate.dense", "mlp.fc1"),
                     ("output.dense", "mlp.fc2")):
        key = key.replace(old, new)
    return key


def ours_to_reference(tensors: dict[str, Any], depth: int, decoder_depth: int) -> dict[str, Any]:
    """Map our `MimirForPreTraining` tensors (state dict or gradients) onto the reference's names."""
    import torch

    ours = {_normalise_our_key(k): v for k, v in tensors.items()}
    out: dict[str, Any] = {}

    def take(name: str):
        return ours.get(name)

    def block(src: str, dst: str) -> None:
        for suffix in ("weight", "bias"):
            parts = [take(f"{src}attention.{p}_proj.{suffix}") for p in "qkv"]
            out[f"{dst}attn.qkv.{suffix}"] = None if any(p is None for p in parts) else torch.cat(parts, dim=0)
            for a, b in (("attention.o_proj", "attn.proj"), ("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
                         ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
                out[f"{dst}{b}.{suffix}"] = take(f"{src}{a}.{suffix}")

    out["cls_token"] = take("vit.embeddings.cls_token")
    out["pos_embed"] = take("vit.embeddings.position_embeddings")
    out["patch_embed.proj.weight"] = take("vit.embeddings.patch_embeddings.projection.weight")
    out["patch_embed.proj.bias"] = take("vit.embeddings.patch_embeddings.projection.bias")
    for i in range(depth):
        block(f"vit.layers.{i}.", f"blocks.{i}.")
    out["norm.weight"], out["norm.bias"] = take("vit.layernorm.weight"), take("vit.layernorm.bias")
    out["mask_token"] = take("decoder.mask_token")
    out["decoder_pos_embed"] = take("decoder.decoder_pos_embed")
    for name in ("decoder_embed", "decoder_norm", "decoder_pred"):
        out[f"{name}.weight"], out[f"{name}.bias"] = take(f"decoder.{name}.weight"), take(f"decoder.{name}.bias")
    for i in range(decoder_depth):
        block(f"decoder.decoder_layers.{i}.", f"decoder_blocks.{i}.")
    return out


def copy_ours_into_reference(ours, reference, shape: dict[str, int]) -> int:
    """Load our weights (fixed sin-cos tables included: the two layouts differ) into the reference model."""
    import torch

    mapped = ours_to_reference(ours.state_dict(), shape["num_hidden_layers"], shape["decoder_num_hidden_layers"])
    target = reference.state_dict()
    missing = sorted(k for k in target if mapped.get(k) is None)
    extra = sorted(set(mapped) - set(target))
    if missing or extra:
        raise RuntimeError(f"weight mapping incomplete: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in target.items():
        if tuple(mapped[key].shape) != tuple(value.shape):
            raise RuntimeError(f"{key}: ours {tuple(mapped[key].shape)} vs reference {tuple(value.shape)}")
    with torch.no_grad():
        reference.load_state_dict({k: mapped[k].detach().clone() for k in target}, strict=True)
    return len(target)


# ---------------------------------------------------------------------------------------------- timing
class Clock:
    """Marks inside one step, on two clocks; the end of the backward is stamped by parameter-gradient hooks.

    "wall" is `perf_counter`; "cpu" is the process's CPU time (`process_time`), which does not run
    while another program holds the core, so on a shared machine it measures the step's own work.
    On CUDA the marks synchronise the device but the hooks stamp when the backward was queued, so
    the backward/optimizer split is approximate there (the totals are not).
    """

    def __init__(self, device) -> None:
        import torch

        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.marks: dict[str, tuple[float, float]] = {}

    def mark(self, name: str) -> None:
        self._sync()
        self.marks[name] = (time.process_time(), time.perf_counter())

    def hook(self, _parameter) -> None:
        self.marks["backward"] = (time.process_time(), time.perf_counter())  # the last hook to fire wins

    def watch(self, model) -> list:
        return [p.register_post_accumulate_grad_hook(self.hook) for p in model.parameters() if p.requires_grad]

    def parts(self) -> dict[str, dict[str, float | None]]:
        """{"cpu": {...}, "wall": {...}}, each with total, attack, forward, backward, optimizer (seconds)."""
        out: dict[str, dict[str, float | None]] = {}
        for index, clock in enumerate(CLOCKS):
            m = {k: v[index] for k, v in self.marks.items()}
            part: dict[str, float | None] = {"total": m["end"] - m["start"]}
            part["attack"] = m["attack"] - m["start"] if "attack" in m else None
            part["forward"] = m["forward"] - m.get("attack", m["start"]) if "forward" in m else None
            part["backward"] = m["backward"] - m["forward"] if "backward" in m and "forward" in m else None
            part["optimizer"] = m["end"] - m["backward"] if "backward" in m else None
            out[clock] = part
        return out


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def _quartiles(values: list[float]) -> tuple[float, float]:
    import statistics

    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# ---------------------------------------------------------------------------------------------- the harness
class Harness:
    """Builds both sides once per batch size and runs their steps on demand."""

    def __init__(self, args: argparse.Namespace, batch: int) -> None:
        import torch

        from mimir_hf.modeling import MimirForPreTraining, mimir_config
        from mimir_hf.pretraining import trainer as trainer_module
        from mimir_hf.pretraining.arguments import MimirTrainingArguments
        from mimir_hf.pretraining.attack import craft_adversarial_pixels

        self.torch = torch
        self.args = args
        self.batch = batch
        self.device = torch.device(args.device)
        self.shape = SHAPES[args.shape]
        self.craft = craft_adversarial_pixels
        self.trainer_module = trainer_module
        lr = BASE_LR * batch / 256
        self.lr = lr
        self.clock = args.clock if args.clock != "auto" else (
            "cpu" if args.threads == 1 and self.device.type == "cpu" else "wall")

        shape = dict(self.shape)
        config = mimir_config("vit-t", shape.pop("image_size"), shape.pop("patch_size"),
                              intermediate_size=4 * shape["hidden_size"],
                              decoder_intermediate_size=4 * shape["decoder_hidden_size"], **shape,
                              mask_ratio=MASK_RATIO, norm_pix_loss=True, mi_weight=MI_WEIGHT, mi_sigma=MI_SIGMA,
                              attack_epsilon=EPSILON, attack_step_size=STEP_SIZE, attack_steps=1,
                              attack_target="adversarial", attack_shares_mask=False)
        torch.manual_seed(args.seed)
        base = MimirForPreTraining(config).to(self.device).train()
        self.base = base

        def ours(mi_weight: float):
            model = copy.deepcopy(base)
            model.config.mi_weight = mi_weight
            return model

        self.models: dict[str, Any] = {}
        self.optimizers: dict[str, Any] = {}
        # Model level: the same AdamW as the reference's loop, so that only the maths differs.
        for kind, mi in (("ours_mimir", MI_WEIGHT), ("ours_mae", 0.0)):
            self.models[kind] = ours(mi)
            self.optimizers[kind] = torch.optim.AdamW(self._decay_groups_ours(self.models[kind]), lr=lr, betas=BETAS)

        # Through the Trainer: its own optimizer (the default `optim`), clipping and zero_grad.
        self.trainers: dict[str, Any] = {}
        for kind, steps, mi in (("trainer_mimir", 1, MI_WEIGHT), ("trainer_mae", 0, 0.0)):
            targs = MimirTrainingArguments(
                output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "compare_reference_trainer"),
                per_device_train_batch_size=batch, report_to="none", use_cpu=self.device.type == "cpu",
                attack_steps=steps, attack_epsilon=EPSILON, attack_step_size=STEP_SIZE, mi_weight=mi,
                mi_sigma=MI_SIGMA, mask_ratio=MASK_RATIO, base_learning_rate=BASE_LR, seed=args.seed,
                disable_tqdm=True, save_strategy="no", logging_strategy="no")
            trainer = trainer_module.MimirTrainer(model=ours(mi), args=targs)
            trainer.create_optimizer()
            # Set by the Trainer's loop before it calls training_step; one micro-batch per step here.
            trainer.current_gradient_accumulation_steps = 1
            self.trainers[kind] = trainer
            self.models[kind] = trainer.model
        self.trainer_optim = str(self.trainers["trainer_mimir"].args.optim)
        self.trainer_optimizer = type(self.trainers["trainer_mimir"].optimizer).__name__

        self.ref: dict[str, Any] | None = None
        if args.reference is not None:
            self.ref = import_reference(args.reference)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # their CUDA GradScaler on a CPU machine: disabled, with a warning
                for kind in ("ref_mimir", "ref_mae"):
                    model = build_reference_model(self.ref, self.shape, self.device)
                    self.copied_tensors = copy_ours_into_reference(base, model, self.shape)
                    self.models[kind] = model
                    groups = self.ref["param_groups_weight_decay"](model, WEIGHT_DECAY)
                    self.optimizers[kind] = torch.optim.AdamW(groups, lr=lr, betas=BETAS)
                    self.optimizers[kind + "_scaler"] = self.ref["NativeScaler"]()
            # As pretrain.py builds it: eps and alpha in [0, 1] units, random start, 1 step.
            self.ref_attack = self.ref["PGD_MAE"](model=self.models["ref_mimir"], eps=EPSILON, alpha=STEP_SIZE,
                                                  steps=1, random_start=True, upper_limit=1.0, lower_limit=0.0)
        self.kinds = [k for k in KINDS_ALL if k in self.models]
        self.clocks = {kind: Clock(self.device) for kind in self.kinds}
        for kind in self.kinds:
            self.clocks[kind].watch(self.models[kind])
        for kind in ("trainer_mimir", "trainer_mae"):
            self._instrument_trainer(kind)
        self.labels = torch.zeros(batch, dtype=torch.long, device=self.device)

    @staticmethod
    def _decay_groups_ours(model) -> list[dict]:
        """No weight decay on biases, norms and tokens (as both trainers do)."""
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(".bias") or "token" in name else decay).append(p)
        return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": WEIGHT_DECAY}]

    def _instrument_trainer(self, kind: str) -> None:
        """Mark the end of the attack and of `compute_loss` inside `training_step`, without changing either."""
        trainer, clock = self.trainers[kind], self.clocks[kind]
        compute_loss = trainer.compute_loss

        def timed_compute_loss(*a, **k):
            out = compute_loss(*a, **k)
            clock.mark("forward")
            return out

        trainer.compute_loss = timed_compute_loss

    @contextlib.contextmanager
    def _attack_marker(self, clock: Clock):
        """While a Trainer step runs, stamp the moment our attack function returns (if the Trainer calls it)."""
        module, name = self.trainer_module, "craft_adversarial_pixels"
        original = getattr(module, name, None)
        if original is None:
            yield
            return

        def wrapped(*a, **k):
            out = original(*a, **k)
            clock.mark("attack")
            return out

        setattr(module, name, wrapped)
        try:
            yield
        finally:
            setattr(module, name, original)

    def batch_for(self, round_index: int):
        g = self.torch.Generator().manual_seed(10_000 + round_index)
        s = self.shape["image_size"]
        return self.torch.rand(self.batch, 3, s, s, generator=g).to(self.device)

    # ------------------------------------------------------------------ the steps
    def step(self, kind: str, x, seed: int) -> dict[str, float | None]:
        torch = self.torch
        clock = self.clocks[kind]
        clock.marks = {}
        torch.manual_seed(seed)
        getattr(self, "_" + kind)(x, clock)
        return clock.parts()

    def _ours_mimir(self, x, clock: Clock) -> None:
        model, optimizer = self.models["ours_mimir"], self.optimizers["ours_mimir"]
        cfg = model.config
        clock.mark("start")
        adversarial = self.craft(model, x, epsilon=cfg.attack_epsilon, step_size=cfg.attack_step_size,
                                 steps=cfg.attack_steps, target=cfg.attack_target)
        clock.mark("attack")
        out = model(pixel_values=x, adversarial_pixel_values=adversarial)
        clock.mark("forward")
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.mark("end")

    def _ours_mae(self, x, clock: Clock) -> None:
        model, optimizer = self.models["ours_mae"], self.optimizers["ours_mae"]
        clock.mark("start")
        out = model(pixel_values=x)
        clock.mark("forward")
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.mark("end")

    def _trainer_step(self, kind: str, x, clock: Clock) -> None:
        trainer = self.trainers[kind]
        inputs = {"pixel_values": x}
        with self._attack_marker(clock):
            clock.mark("start")
            trainer.training_step(trainer.model, inputs)
        if trainer.args.max_grad_norm is not None and trainer.args.max_grad_norm > 0:
            trainer._clip_grad_norm(trainer.model)
        trainer.optimizer.step()
        trainer.model.zero_grad()
        clock.mark("end")

    def _trainer_mimir(self, x, clock: Clock) -> None:
        self._trainer_step("trainer_mimir", x, clock)

    def _trainer_mae(self, x, clock: Clock) -> None:
        self._trainer_step("trainer_mae", x, clock)

    def _ref_mimir(self, x, clock: Clock) -> None:
        """The body of the reference's `train_one_epoch` (pretrain.py) for `--attack pgd_mae --mi_train hsic`.

        Left out: `torch.cuda.amp.autocast()` (a no-op for CPU tensors, and this comparison is fp32),
        `torch.cuda.synchronize()`, the lr schedule and the logging.
        """
        model = self.models["ref_mimir"]
        hsic = self.ref["hsic_normalized_cca"]
        clock.mark("start")
        adv_images = self.ref_attack(x, self.labels)
        clock.mark("attack")
        loss, pred, _, latent = model(x, mask_ratio=MASK_RATIO, adv_images=adv_images)
        latent = latent.view(latent.shape[0], -1)
        h_data_adv = adv_images.view(adv_images.shape[0], -1)
        h_xp_l = hsic(latent, h_data_adv, sigma=MI_SIGMA)
        hsic_loss = MI_WEIGHT * h_xp_l
        if math.isfinite(hsic_loss) and h_xp_l != 0:
            loss += hsic_loss
        self._ref_update("ref_mimir", loss, clock)

    def _ref_mae(self, x, clock: Clock) -> None:
        model = self.models["ref_mae"]
        clock.mark("start")
        loss, _, _, _ = model(x, mask_ratio=MASK_RATIO)
        self._ref_update("ref_mae", loss, clock)

    def _ref_update(self, kind: str, loss, clock: Clock) -> None:
        """The rest of the reference's loop body: the loss check, their loss scaler (backward, norm, step), zero_grad."""
        model, optimizer, scaler = self.models[kind], self.optimizers[kind], self.optimizers[kind + "_scaler"]
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise RuntimeError(f"reference loss is {loss_value}")
        clock.mark("forward")
        scaler(loss, optimizer, parameters=model.parameters(), update_grad=True)
        optimizer.zero_grad()
        clock.mark("end")

    # ------------------------------------------------------------------ same maths?
    def agreement(self) -> dict[str, Any]:
        """One MIMIR and one MAE forward+backward of each side from the same weights and RNG state."""
        torch = self.torch
        assert self.ref is not None
        ours = copy.deepcopy(self.base)
        theirs = build_reference_model(self.ref, self.shape, self.device)
        copy_ours_into_reference(ours, theirs, self.shape)
        attack = self.ref["PGD_MAE"](model=theirs, eps=EPSILON, alpha=STEP_SIZE, steps=1, random_start=True,
                                     upper_limit=1.0, lower_limit=0.0)
        x = self.batch_for(-1)
        seed = self.args.seed + 12345
        cfg = ours.config

        def rel(a: float, b: float) -> float:
            return abs(a - b) / max(abs(b), 1e-30)

        def grad_rel() -> float:
            mine = ours_to_reference({n: p.grad for n, p in ours.named_parameters() if p.grad is not None},
                                     self.shape["num_hidden_layers"], self.shape["decoder_num_hidden_layers"])
            num = den = 0.0
            for name, p in theirs.named_parameters():
                if not p.requires_grad:
                    continue
                g = mine.get(name)
                if g is None or p.grad is None:
                    raise RuntimeError(f"no gradient to compare for {name}")
                num += float((g.double() - p.grad.double()).pow(2).sum())
                den += float(p.grad.double().pow(2).sum())
            return math.sqrt(num / den)

        # MIMIR: attack (random start + own mask), training forward on x' against x, nHSIC, backward.
        torch.manual_seed(seed)
        adv_ours = self.craft(ours, x, epsilon=cfg.attack_epsilon, step_size=cfg.attack_step_size, steps=1,
                              target="adversarial")
        out = ours(pixel_values=x, adversarial_pixel_values=adv_ours)
        out.loss.backward()
        torch.manual_seed(seed)
        adv_ref = attack(x, self.labels)
        loss_ref, _, _, latent = theirs(x, mask_ratio=MASK_RATIO, adv_images=adv_ref)
        nhsic_ref = self.ref["hsic_normalized_cca"](latent.view(latent.shape[0], -1), adv_ref.view(adv_ref.shape[0], -1),
                                                    sigma=MI_SIGMA)
        recon_ref = loss_ref.item()
        (loss_ref + MI_WEIGHT * nhsic_ref.to(loss_ref.device)).backward()
        nhsic_ours = out.mi_loss.item() / MI_WEIGHT
        mimir = {
            "adversarial_equal_fraction": float((adv_ours == adv_ref).float().mean()),
            "adversarial_max_abs_diff": float((adv_ours - adv_ref).abs().max()),
            "reconstruction_ours": out.reconstruction_loss.item(), "reconstruction_ref": recon_ref,
            "reconstruction_rel": rel(out.reconstruction_loss.item(), recon_ref),
            "nhsic_ours": nhsic_ours, "nhsic_ref": nhsic_ref.item(), "nhsic_rel": rel(nhsic_ours, nhsic_ref.item()),
            "total_ours": out.loss.item(), "total_ref": recon_ref + MI_WEIGHT * nhsic_ref.item(),
            "gradient_rel": grad_rel(),
        }
        mimir["total_rel"] = rel(mimir["total_ours"], mimir["total_ref"])
        ours.zero_grad(set_to_none=True)
        theirs.zero_grad(set_to_none=True)

        # Plain MAE: forward on x, backward.
        ours.config.mi_weight = 0.0
        torch.manual_seed(seed + 1)
        out = ours(pixel_values=x)
        out.loss.backward()
        torch.manual_seed(seed + 1)
        loss_ref, _, _, _ = theirs(x, mask_ratio=MASK_RATIO)
        loss_ref.backward()
        mae = {"reconstruction_ours": out.loss.item(), "reconstruction_ref": loss_ref.item(),
               "reconstruction_rel": rel(out.loss.item(), loss_ref.item()), "gradient_rel": grad_rel()}
        checks = {
            "reconstruction": max(mimir["reconstruction_rel"], mae["reconstruction_rel"]) <= TOLERANCE["reconstruction_rel"],
            "nhsic": mimir["nhsic_rel"] <= TOLERANCE["nhsic_rel"],
            "gradients": max(mimir["gradient_rel"], mae["gradient_rel"]) <= TOLERANCE["gradient_rel"],
            "adversarial": mimir["adversarial_equal_fraction"] >= TOLERANCE["adversarial_equal_fraction"],
        }
        return {"mimir": mimir, "mae": mae, "tolerance": TOLERANCE, "checks": checks, "agree": all(checks.values()),
                "weights": f"ours copied into theirs ({self.copied_tensors} tensors, fixed sin-cos tables included)"}

    # ------------------------------------------------------------------ timed rounds
    def run(self, log) -> dict[str, Any]:
        args = self.args
        times = {c: defaultdict(list) for c in CLOCKS}
        parts = {c: {k: defaultdict(list) for k in self.kinds} for c in CLOCKS}
        total_rounds = args.warmup + args.rounds
        for r in range(total_rounds):
            x = self.batch_for(r)
            seed = args.seed + 1000 + r
            order = self.kinds[r % len(self.kinds):] + self.kinds[: r % len(self.kinds)]
            if r % 2:
                order = order[::-1]
            started = time.perf_counter()
            for kind in order:
                p = self.step(kind, x, seed)
                if r >= args.warmup:
                    for c in CLOCKS:
                        times[c][kind].append(p[c]["total"])
                        for part in PARTS:
                            if p[c][part] is not None:
                                parts[c][kind][part].append(p[c][part])
            label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.rounds}"
            shown = times[self.clock]
            log(f"  batch {self.batch} {label}: {time.perf_counter() - started:.1f} s wall; {self.clock} ms: "
                + " ".join(f"{k}={shown[k][-1] * 1e3:.0f}" for k in self.kinds if r >= args.warmup))
        return {"batch": self.batch, "rounds": args.rounds, "lr": self.lr, "clock": self.clock,
                **{c: self.summarise(times[c], parts[c]) for c in CLOCKS}}

    def summarise(self, times, parts) -> dict[str, Any]:
        kinds = self.kinds
        out: dict[str, Any] = {"step_ms": {}, "step_iqr_ms": {}, "parts_ms": {}}
        for k in kinds:
            out["step_ms"][k] = _median(times[k]) * 1e3
            q1, q3 = _quartiles(times[k])
            out["step_iqr_ms"][k] = [q1 * 1e3, q3 * 1e3]
            out["parts_ms"][k] = {p: (_median(v) * 1e3 if v else None) for p, v in ((p, parts[k].get(p, [])) for p in PARTS)}

        def ratio(a: str, b: str) -> dict[str, Any] | None:
            if a not in times or b not in times:
                return None
            per_round = [x / y for x, y in zip(times[a], times[b])]
            return {"median_of_round_ratios": _median(per_round), "ratio_of_medians": _median(times[a]) / _median(times[b]),
                    "round_min": min(per_round), "round_max": max(per_round), "round_iqr": list(_quartiles(per_round))}

        out["ratios"] = {
            "ours_mimir/ref_mimir": ratio("ours_mimir", "ref_mimir"),
            "trainer_mimir/ref_mimir": ratio("trainer_mimir", "ref_mimir"),
            "ours_mae/ref_mae": ratio("ours_mae", "ref_mae"),
            "trainer_mae/ref_mae": ratio("trainer_mae", "ref_mae"),
            "trainer_mimir/trainer_mae": ratio("trainer_mimir", "trainer_mae"),
            "ours_mimir/ours_mae": ratio("ours_mimir", "ours_mae"),
            "ref_mimir/ref_mae": ratio("ref_mimir", "ref_mae"),
        }
        out["ratios"] = {k: v for k, v in out["ratios"].items() if v is not None}
        return out

    # ------------------------------------------------------------------ where the time goes
    def profile(self, rows: int) -> dict[str, Any]:
        torch = self.torch
        from torch.profiler import ProfilerActivity, profile

        x = self.batch_for(0)
        report: dict[str, Any] = {"tables": {}, "host_syncs": {}, "mi_penalty_ms": {}}
        for kind in [k for k in ("trainer_mimir", "ours_mimir", "ref_mimir") if k in self.kinds]:
            self.step(kind, x, 7)  # warm
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                self.step(kind, x, 7)
            averages = prof.key_averages()
            report["tables"][kind] = averages.table(sort_by="self_cpu_time_total", row_limit=rows)
            total = sum(e.self_cpu_time_total for e in averages)
            top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
            report.setdefault("top_ops_self_cpu_ms", {})[kind] = {
                "total": total / 1e3, **{e.key: round(e.self_cpu_time_total / 1e3, 2) for e in top}}
            report["host_syncs"][kind] = count_host_syncs(lambda: self.step(kind, x, 7))
        # The MI penalty alone, forward + backward, on the same latent and x' (ours float64 solve, theirs float32 inverse).
        model = self.models["ours_mimir"]
        with torch.no_grad():
            latent = model.vit(x).last_hidden_state
        penalty = model.mi_penalty
        candidates = {"ours": lambda z, a: penalty(z, a).value}
        if self.ref is not None:
            hsic = self.ref["hsic_normalized_cca"]
            candidates["ref"] = lambda z, a: hsic(z.view(z.shape[0], -1), a.view(a.shape[0], -1), sigma=MI_SIGMA)
        for name, fn in candidates.items():
            samples = []
            for _ in range(5):
                z = latent.detach().clone().requires_grad_(True)
                start = time.perf_counter()
                (MI_WEIGHT * fn(z, x)).backward()
                samples.append(time.perf_counter() - start)
            report["mi_penalty_ms"][name] = _median(samples) * 1e3
        return report


def count_host_syncs(fn) -> dict[str, Any]:
    """Calls that read a tensor's value on the host during `fn()` (each a device->host sync on a GPU).

    Counted apart: those inside `Optimizer.step` (torch's non-fused AdamW reads its CPU step counters,
    which is no device sync) and those in the rest of the step (attack, forward, backward, clipping).
    `step_ms` is the time spent inside the counted calls outside the optimizer.
    """
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    counts: dict[str, dict[str, int]] = {"step": defaultdict(int), "optimizer": defaultdict(int)}
    spent = {"step": 0.0, "optimizer": 0.0}
    where = ["step"]
    names = ("item", "tolist", "__bool__", "__int__", "__float__")
    originals = {n: getattr(torch.Tensor, n) for n in names}

    def wrap(n):
        original = originals[n]

        def counted(self, *a, **k):
            counts[where[0]][n] += 1
            start = time.perf_counter()
            try:
                return original(self, *a, **k)
            finally:
                spent[where[0]] += time.perf_counter() - start

        return counted

    handles = [register_optimizer_step_pre_hook(lambda *a: where.__setitem__(0, "optimizer")),
               register_optimizer_step_post_hook(lambda *a: where.__setitem__(0, "step"))]
    try:
        for n in names:
            setattr(torch.Tensor, n, wrap(n))
        fn()
    finally:
        for n, original in originals.items():
            setattr(torch.Tensor, n, original)
        for handle in handles:
            handle.remove()
    return {**{k: dict(v) for k, v in counts.items()}, "step_ms": spent["step"] * 1e3}


# ---------------------------------------------------------------------------------------------- output
def versions() -> dict[str, str]:
    import platform

    import accelerate
    import numpy
    import torch
    import transformers

    import mimir_hf

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "accelerate": accelerate.__version__, "numpy": numpy.__version__, "mimir_hf": mimir_hf.__version__}
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:
        out["timm"] = "absent"
    return out


def reference_revision(path: Path | None) -> str | None:
    if path is None:
        return None
    head = path / ".git"
    try:
        import subprocess

        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)" if not head.exists() else "unknown"


def print_summary(result: dict[str, Any], log) -> None:
    primary = result["clock"]
    summary = result[primary]
    log(f"\n== batch {result['batch']}: medians of {result['rounds']} interleaved rounds, {primary} clock (ms; IQR)")
    for kind, ms in summary["step_ms"].items():
        q = summary["step_iqr_ms"][kind]
        p = summary["parts_ms"][kind]
        split = " | ".join(f"{name} {p[name]:.0f}" for name in PARTS if p.get(name) is not None)
        log(f"  {kind:14s} {ms:8.0f} ({q[0]:.0f}-{q[1]:.0f})   {split}")
    log("  ratios: median of per-round ratios [per-round IQR] (ratio of medians); other clock's median ratio")
    other = [c for c in CLOCKS if c != primary][0]
    for name, r in summary["ratios"].items():
        o = result[other]["ratios"][name]
        log(f"    {name:26s} {r['median_of_round_ratios']:.3f} [{r['round_iqr'][0]:.3f}, {r['round_iqr'][1]:.3f}] "
            f"({r['ratio_of_medians']:.3f});   {other}: {o['median_of_round_ratios']:.3f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch's OpenMP starts
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine_description

    def log(message: str) -> None:
        print(message, flush=True)

    info = {"machine": machine_description(), "threads": torch.get_num_threads(), "device": args.device,
            "dtype": "float32", "versions": versions(), "reference": str(args.reference) if args.reference else None,
            "reference_revision": reference_revision(args.reference), "shape": {args.shape: SHAPES[args.shape]},
            "settings": {"mask_ratio": MASK_RATIO, "attack": f"1-step PGD eps {EPSILON:.5f} alpha {STEP_SIZE:.5f}, random start",
                         "mi": f"nHSIC lambda {MI_WEIGHT} sigma {MI_SIGMA}", "rounds": args.rounds, "warmup": args.warmup,
                         "base_lr": BASE_LR}}
    log(f"machine: {info['machine']}")
    log(f"threads: {info['threads']} | device {args.device} | fp32 | versions: "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    if args.reference:
        log(f"reference: {args.reference} @ {info['reference_revision']}")
    results, agreement, profiles = [], None, {}
    for batch in args.batch_sizes:
        harness = Harness(args, batch)
        info.setdefault("optimizers", {
            "model_level": "torch.optim.AdamW (foreach), as the reference's loop; reference: timm parameter groups",
            "trainer": f"{harness.trainer_optimizer} (TrainingArguments.optim={harness.trainer_optim}), "
                       f"max_grad_norm={harness.trainers['trainer_mimir'].args.max_grad_norm}",
        })
        if harness.ref is not None and agreement is None:
            agreement = harness.agreement()
            m, a = agreement["mimir"], agreement["mae"]
            log(f"same maths? {'yes' if agreement['agree'] else 'NO'} ({agreement['weights']})")
            log(f"  MIMIR: reconstruction {m['reconstruction_ours']:.6f} vs {m['reconstruction_ref']:.6f} (rel {m['reconstruction_rel']:.1e}); "
                f"nHSIC {m['nhsic_ours']:.5f} vs {m['nhsic_ref']:.5f} (rel {m['nhsic_rel']:.1e}); "
                f"gradients rel {m['gradient_rel']:.1e}; x' equal {100 * m['adversarial_equal_fraction']:.3f} %")
            log(f"  MAE:   reconstruction {a['reconstruction_ours']:.6f} vs {a['reconstruction_ref']:.6f} (rel {a['reconstruction_rel']:.1e}); "
                f"gradients rel {a['gradient_rel']:.1e}")
        log(f"timing batch {batch}: {args.warmup} warm-up + {args.rounds} rounds of {', '.join(harness.kinds)}")
        result = harness.run(log)
        results.append(result)
        print_summary(result, log)
        if args.profile:
            profiles[batch] = harness.profile(args.profile_rows)
            for kind, table in profiles[batch]["tables"].items():
                log(f"\n-- profile: one {kind} step, batch {batch} (self CPU time)\n{table}")
            log(f"host syncs per step: {json.dumps(profiles[batch]['host_syncs'])}")
            log(f"MI penalty alone (fwd+bwd): " + ", ".join(f"{k} {v:.1f} ms" for k, v in profiles[batch]["mi_penalty_ms"].items()))
        del harness
    info["machine_at_end"] = machine_description()
    document = {**info, "agreement": agreement, "results": results}
    if profiles:
        document["profile"] = {str(b): {k: v for k, v in p.items() if k != "tables"} for b, p in profiles.items()}
    log("\nJSON:")
    log(json.dumps(document, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2))
    if agreement is not None and not agreement["agree"]:
        log("WARNING: the two implementations did not compute the same maths within tolerance; the timings compare different work.")
    return document


if __name__ == "__main__":
    main()
