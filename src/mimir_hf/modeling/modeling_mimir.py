"""`MimirForPreTraining`: ViT-MAE that encodes an adversarial image and reconstructs the clean one.

The class adds three things to `ViTMAEForPreTraining` and nothing else, so that its checkpoints
stay ordinary `vit_mae` checkpoints:

1. `forward` takes an optional `adversarial_pixel_values`: the encoder sees it, while the
   reconstruction target stays the clean `pixel_values` (MIMIR's "adversarial input, clean target").
2. The mutual-information penalty λ · I(Z, X′) between the encoder's latent and its input.
3. The MAE initialisation (fixed sin-cos position embeddings, xavier linears, N(0, 0.02) tokens),
   which transformers 5.x skips for a `ViTMAEForPreTraining` built from a config: its embeddings
   initialiser returns early once the patch projection is marked initialised, and the decoder's
   zeroes the position embeddings and mask token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import ViTMAEForPreTraining
from transformers import initialization as init
from transformers.models.vit_mae.modeling_vit_mae import (
    ViTMAEEmbeddings,
    ViTMAEForPreTrainingOutput,
    build_2d_sinusoidal_position_embedding,
)
from transformers.utils import logging

from ..validation import check_image_size, check_pixel_values
from .configuration_mimir import MimirConfig

__all__ = ["MimirForPreTraining", "MimirForPreTrainingOutput", "init_mae_embeddings"]

logger = logging.get_logger(__name__)


@dataclass
class MimirForPreTrainingOutput(ViTMAEForPreTrainingOutput):
    r"""
    loss (`torch.Tensor` of shape `()`):
        `reconstruction_loss + mi_loss`, the quantity MIMIR minimises.
    reconstruction_loss (`torch.Tensor` of shape `()`):
        MSE on the masked patches against the *clean* image (per-patch normalised with `norm_pix_loss`).
    mi_loss (`torch.Tensor` of shape `()`):
        The weighted penalty λ · I(Z, X′); zero when `mi_weight` is 0 or the estimate had to be dropped.
    mi_dropped (`torch.BoolTensor` of shape `()`):
        True when the MI estimate failed (singular system or non-finite value) and was left out of the loss.
    latent (`torch.Tensor` of shape `(batch_size, 1 + visible_patches, hidden_size)`):
        The encoder output the penalty was computed on (CLS + visible tokens, after the final LayerNorm).
    """

    reconstruction_loss: torch.Tensor | None = None
    mi_loss: torch.Tensor | None = None
    mi_dropped: torch.Tensor | None = None
    latent: torch.Tensor | None = None


def _sincos_position_embedding(num_patches: int, dim: int) -> torch.Tensor:
    """The MAE's fixed 2-D sin-cos table with a zero CLS row, in transformers' (h/w-rotated) layout."""
    grid = int(round(num_patches**0.5))
    table = build_2d_sinusoidal_position_embedding(grid, grid, embed_dim=dim, cls_token=True)
    half = dim // 2
    return torch.cat([table[..., half:], table[..., :half]], dim=-1).unsqueeze(0)


@torch.no_grad()
def init_mae_embeddings(embeddings: ViTMAEEmbeddings, initializer_range: float, *, keep_loaded: bool = True) -> None:
    """MAE's embedding init: the fixed 2-D sin-cos table, a xavier-uniform patch projection (as a
    matrix, as MAE initialises it) and an N(0, `initializer_range`) CLS token.

    The one place that knows the init, used by `MimirForPreTraining` (on construction and for what a
    checkpoint did not hold) and by `mimir_hf.finetuning.reset_mae_embeddings` (for stock encoders,
    whose own init transformers 5.x skips). `keep_loaded` leaves alone the tensors transformers flagged
    `_is_hf_initialized` (loaded from a checkpoint; a private flag, see tests/test_transformers_canaries.py).
    """

    def fresh(tensor: torch.Tensor) -> bool:
        return not (keep_loaded and getattr(tensor, "_is_hf_initialized", False))

    table = embeddings.position_embeddings
    if fresh(table):
        table.copy_(_sincos_position_embedding(embeddings.patch_embeddings.num_patches, table.shape[-1]))
    weight = embeddings.patch_embeddings.projection.weight
    if fresh(weight):  # through a view: the flag lives on the parameter, not on the view
        torch.nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    if fresh(embeddings.cls_token):
        torch.nn.init.normal_(embeddings.cls_token, std=initializer_range)


class MimirForPreTraining(ViTMAEForPreTraining):
    """ViT-MAE pretraining model for MIMIR; see the module docstring and `MimirConfig`."""

    config_class = MimirConfig
    config: MimirConfig

    def __init__(self, config: MimirConfig):
        if not isinstance(config, MimirConfig):  # e.g. a stock ViTMAEConfig: keep its values, add MIMIR defaults
            config = MimirConfig(**config.to_dict())
        super().__init__(config)
        self._mi_penalty = None

    # ------------------------------------------------------------------ initialisation
    def initialize_weights(self) -> None:
        # Hooked here rather than in `_init_weights`: transformers treats this class as custom code
        # and never visits the parameter-less top module, and the encoder is a nested
        # `PreTrainedModel` that uses its own `_init_weights`. Both construction from a config and
        # `from_pretrained` (for missing keys) come through this method.
        super().initialize_weights()
        self._initialize_mae_weights()

    @torch.no_grad()
    def _initialize_mae_weights(self) -> None:
        """Apply the MAE initialisation to every tensor that was not loaded from a checkpoint.

        `transformers.initialization` functions skip tensors flagged `_is_hf_initialized` (loaded
        ones), so calling this after `from_pretrained` leaves loaded weights untouched.
        """
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    init.zeros_(module.bias)
        init_mae_embeddings(self.vit.embeddings, self.config.initializer_range)
        decoder = self.decoder
        init.copy_(
            decoder.decoder_pos_embed,
            _sincos_position_embedding(decoder.decoder_pos_embed.shape[1] - 1, decoder.decoder_pos_embed.shape[-1]),
        )
        init.normal_(decoder.mask_token, std=self.config.initializer_range)

    # ------------------------------------------------------------------ MI penalty
    @property
    def mi_penalty(self):
        """The configured estimator wrapper; rebuilt if the config changed (e.g. a trainer set σ)."""
        from ..mutual_information import MutualInformationPenalty

        compute_dtype = getattr(self.config, "mi_compute_dtype", "auto")
        key = (self.config.mi_estimator, self.config.mi_sigma, self.config.mi_epsilon, self.config.mi_alpha, compute_dtype)
        if self._mi_penalty is None or self._mi_penalty_key != key:
            self._mi_penalty = MutualInformationPenalty(
                estimator=self.config.mi_estimator,
                sigma=self.config.mi_sigma,
                epsilon=self.config.mi_epsilon,
                alpha=self.config.mi_alpha,
                compute_dtype=compute_dtype,
            )
            self._mi_penalty_key = key
        return self._mi_penalty

    # ------------------------------------------------------------------ losses
    def reconstruction_loss(
        self,
        target_pixel_values: torch.Tensor,
        logits: torch.Tensor,
        mask: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """MAE loss on the masked patches; `reduction="none"` gives one value per sample (for attacks)."""
        target = self.patchify(target_pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((logits - target) ** 2).mean(dim=-1)
        if reduction == "none":
            return (per_patch * mask).sum(dim=1) / mask.sum(dim=1)
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
        return (per_patch * mask).sum() / mask.sum()

    def _check_inputs(
        self, name: str, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None, check_range: bool
    ) -> None:
        # The [0, 1] range check reads two values back from the device (a GPU sync) and breaks a
        # torch.compile graph, so callers that validated their batch already (the trainer's
        # collator) and compiled code skip it; the shape checks cost nothing and always run.
        check_range = check_range and not torch.compiler.is_compiling()
        check_pixel_values(pixel_values, num_channels=self.config.num_channels, name=name, check_range=check_range)
        check_image_size(*pixel_values.shape[-2:], self.config.image_size, interpolate_pos_encoding, name=name)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        adversarial_pixel_values: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        reconstruction_target: torch.Tensor | None = None,
        loss_reduction: str = "mean",
        check_inputs: bool = True,
        **kwargs,
    ) -> MimirForPreTrainingOutput:
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`):
            The clean images in [0, 1]; the reconstruction target.
        adversarial_pixel_values (`torch.Tensor`, *optional*):
            The adversarial images x′ the encoder sees instead of `pixel_values`.
        noise (`torch.Tensor` of shape `(batch_size, num_patches)`, *optional*):
            Fixes the random mask (argsort of the noise), e.g. to share it with the attack.
        reconstruction_target (`torch.Tensor`, *optional*):
            Overrides the reconstruction target (the attack uses it to reconstruct x′ itself).
        loss_reduction (`str`, defaults to `"mean"`):
            `"none"` returns one reconstruction loss per sample (shape `(batch,)`) and skips the MI
            penalty, which is a batch-level quantity; this is what the pretraining attack maximises.
            The attack goes through `forward` (rather than calling `vit` and `decoder`) so that
            Accelerate's autocast and FSDP's unshard hooks, which wrap `forward`, apply to it too.
        check_inputs (`bool`, defaults to `True`):
            Check that the pixels lie in [0, 1]. `MimirTrainer` checks each batch once in its
            collator and passes `False`, because the check waits for the device.
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` (the clean images in [0, 1]) is required.")
        if loss_reduction not in ("mean", "none"):
            raise ValueError(f"loss_reduction must be 'mean' or 'none', got {loss_reduction!r}.")
        self._check_inputs("pixel_values", pixel_values, interpolate_pos_encoding, check_inputs)
        encoder_input = pixel_values
        if adversarial_pixel_values is not None:
            self._check_inputs("adversarial_pixel_values", adversarial_pixel_values, interpolate_pos_encoding, check_inputs)
            if adversarial_pixel_values.shape != pixel_values.shape:
                raise ValueError(
                    f"`adversarial_pixel_values` has shape {tuple(adversarial_pixel_values.shape)} but "
                    f"`pixel_values` has {tuple(pixel_values.shape)}; they must match."
                )
            encoder_input = adversarial_pixel_values

        outputs = self.vit(
            encoder_input,
            noise=noise,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            **kwargs,
        )
        latent = outputs.last_hidden_state
        logits = self.decoder(latent, outputs.ids_restore, interpolate_pos_encoding=interpolate_pos_encoding).logits

        target = pixel_values if reconstruction_target is None else reconstruction_target
        reconstruction_loss = self.reconstruction_loss(
            target, logits, outputs.mask, bool(interpolate_pos_encoding), reduction=loss_reduction
        )

        mi_dropped = torch.zeros((), dtype=torch.bool, device=latent.device)
        if self.config.mi_weight > 0 and loss_reduction == "mean":
            result = self.mi_penalty(latent, encoder_input)
            mi_loss = self.config.mi_weight * result.value
            mi_dropped = result.dropped
        else:
            mi_loss = torch.zeros((), dtype=reconstruction_loss.dtype, device=latent.device)

        return MimirForPreTrainingOutput(
            loss=reconstruction_loss + mi_loss,
            logits=logits,
            mask=outputs.mask,
            ids_restore=outputs.ids_restore,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            reconstruction_loss=reconstruction_loss,
            mi_loss=mi_loss,
            mi_dropped=mi_dropped,
            latent=latent,
        )
