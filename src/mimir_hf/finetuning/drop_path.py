"""Stochastic depth for a stock transformers ViT, without changing its class.

`ViTLayer` (transformers 5.x) applies one `self.dropout` module to the attention branch and to
the MLP branch just before each residual addition. A forward hook on that module can therefore
zero a branch per sample (scaling survivors by 1/keep), which is exactly drop path. The hooks are
runtime-only: nothing is stored in the config or the weights, so the saved classifier stays an
ordinary `vit` checkpoint, and they are inert in eval mode (attacks and evaluation).
"""

from __future__ import annotations

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["add_drop_path"]


def _blocks(model: nn.Module) -> nn.ModuleList:
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers) and all(hasattr(block, "dropout") for block in layers):
            return layers
    raise ValueError("Drop path needs a transformers ViT whose blocks apply `dropout` before each residual add.")


def _hook(probability: float):
    keep = 1.0 - probability

    def drop_branch(module: nn.Module, inputs, output):
        if not module.training or probability == 0.0:
            return output
        shape = (output.shape[0],) + (1,) * (output.ndim - 1)
        mask = output.new_empty(shape).bernoulli_(keep)
        return output * mask / keep

    return drop_branch


def add_drop_path(model: nn.Module, rate: float) -> list[RemovableHandle]:
    """Install drop path with probability `rate · i / (L − 1)` on block `i`; returns the removable hooks."""
    if rate <= 0:
        return []
    blocks = _blocks(model)
    depth = len(blocks)
    handles = []
    for index, block in enumerate(blocks):
        probability = rate * index / (depth - 1) if depth > 1 else rate
        if probability > 0:
            handles.append(block.dropout.register_forward_hook(_hook(probability)))
    return handles
