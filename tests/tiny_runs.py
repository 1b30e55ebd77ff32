"""Tiny trainers and probes shared by the CPU tests and the `gpu` tests (no `datasets` needed: the GPU machine lacks it)."""

from __future__ import annotations

import torch
from transformers import ViTMAEConfig

from mimir_hf.finetuning import AdversarialTrainer, AdversarialTrainingArguments, mae_to_classifier, random_mae_encoder
from mimir_hf.modeling import MimirForPreTraining, mimir_config
from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments
from sync_counter import count_host_syncs

TINY_MAE = dict(patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY_VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4,
    layer_norm_eps=1e-6, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
)
COMMON = dict(num_train_epochs=1, logging_steps=1, report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True, seed=0)


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 16, size: int = 32):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(i))}


class LabelledImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 16, num_labels: int = 3, size: int = 16):
        g = torch.Generator().manual_seed(0)
        self.pixels = torch.rand(n, 3, size, size, generator=g)
        self.labels = torch.randint(0, num_labels, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.pixels[i], "labels": self.labels[i]}


def labelled_images(n: int = 16, num_labels: int = 3, size: int = 16) -> LabelledImages:
    return LabelledImages(n, num_labels, size)


def pretraining_trainer_for(tmp_path, **overrides) -> MimirTrainer:
    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config("vit-t", 32, **TINY_MAE))
    args = MimirTrainingArguments(output_dir=str(tmp_path / "pre"), per_device_train_batch_size=8, **{**COMMON, **overrides})
    return MimirTrainer(model=model, args=args, train_dataset=RandomImages())


def finetuning_trainer_for(tmp_path, **overrides) -> AdversarialTrainer:
    torch.manual_seed(0)
    # the mean-pooled classifier carries its drop path in its config: build it with the run's rate
    drop_path_rate = overrides.get("drop_path_rate", 0.0)
    model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY_VIT)), num_labels=3, drop_path_rate=drop_path_rate)
    values = dict(per_device_train_batch_size=8, per_device_eval_batch_size=8, attack_steps=2, eval_attack_steps=2)
    args = AdversarialTrainingArguments(output_dir=str(tmp_path / "fine"), **{**COMMON, **values, **overrides})
    return AdversarialTrainer(model=model, args=args, train_dataset=labelled_images(), eval_dataset=labelled_images(8))


class LinearDtypes:
    """Output dtypes of every `nn.Linear` call, split by whether an attack was running."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.in_attack = False
        self.attack: set[torch.dtype] = set()
        self.other: set[torch.dtype] = set()
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def _hook(self, module, inputs, output) -> None:
        (self.attack if self.in_attack else self.other).add(output.dtype)

    def marking(self, function):
        def marked(*args, **kwargs):
            self.in_attack = True
            try:
                return function(*args, **kwargs)
            finally:
                self.in_attack = False

        return marked


def count_step_syncs(trainer) -> list:
    logs: list = []
    original = trainer.training_step

    def counted(*args, **kwargs):
        with count_host_syncs() as log:
            result = original(*args, **kwargs)
        logs.append(log)
        return result

    trainer.training_step = counted
    trainer.train()
    return logs
