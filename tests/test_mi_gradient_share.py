"""benchmarks/mi_gradient_share.py: the MI penalty's share of a pretraining step's gradient."""

import pytest
import torch

from mimir_hf.modeling import MimirForPreTraining, mimir_config
from mimir_hf.pretraining import MimirTrainingArguments


@pytest.mark.slow  # builds a model and runs a 1-step attack: ~5 s on a loaded 2-core machine
def test_the_nhsic_gradient_is_the_weighted_loss_gradient_minus_the_reconstruction_one(load_benchmark, tmp_path):
    """Checked against an independent route: the gradient of reconstruction + 1 · nHSIC minus that of reconstruction."""
    share = load_benchmark("mi_gradient_share")
    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config("vit-t", 32, 4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64))
    args = MimirTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", mi_weight=1e-5)
    pixels = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)  # the attack draws its own mask from the global generator
    row = share.gradient_norms(model, pixels, args, seed=3)
    assert model.config.mi_weight == 1e-5  # restored after the measurement

    torch.manual_seed(5)
    generator = torch.Generator().manual_seed(3)  # the same x′ and mask as the measurement
    adversarial = share.craft_adversarial_pixels(model, pixels, epsilon=args.attack_epsilon, step_size=args.attack_step_size,
                                                 steps=args.attack_steps, target=args.attack_target, generator=generator)
    noise = torch.rand(16, model.vit.embeddings.patch_embeddings.num_patches, generator=generator)
    parameters = [p for p in model.parameters() if p.requires_grad]

    def gradient(mi_weight: float) -> torch.Tensor:
        model.config.mi_weight = mi_weight
        loss = model(pixel_values=pixels, adversarial_pixel_values=adversarial, noise=noise).loss
        return torch.cat([g.flatten().double() for g in torch.autograd.grad(loss, parameters)])

    g_total, g_rec = gradient(1.0), gradient(0.0)
    assert row["grad_norm_reconstruction"] == pytest.approx(float(g_rec.norm()), rel=1e-6)
    assert row["grad_norm_nhsic"] == pytest.approx(float((g_total - g_rec).norm()), rel=1e-4)
    assert row["ratio"] > 0

    summary = share.summarise([row, {**row, "ratio": 3 * row["ratio"]}], mi_weight=1e-5, target_share=0.2)
    median = 2 * row["ratio"]  # the median of two values is their mean
    assert summary["mi_weight_for_target_share"] == pytest.approx(0.2 / median)
    assert summary["gradient_share_at_mi_weight"] == pytest.approx(1e-5 * median)
