"""FSDP (fully_shard, FSDP2) with 2 CPU processes on gloo: both stages' attacks run through the sharded modules.

Accelerate 1.16 cannot shard on the CPU: with `use_cpu` it sets `MULTI_CPU` and only turns a
launch into FSDP for GPU-like device types (`accelerate/state.py`), so an FSDP config silently
trains with DDP there. This test therefore shards with torch's `fully_shard` directly, as
Accelerate's FSDP2 path does, and runs the library's attack + training step on the sharded
modules: the pretraining attack through `MimirForPreTraining.forward` (which gathers the
sharded parameters) and the finetuning PGD through the classifier's forward, with
`freeze_parameters=False` as the trainers pass under FSDP. Each rank sees different images; the
runs must end with identical (and changed) parameters on both ranks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import ViTMAEConfig
    from mimir_hf.attacks import cross_entropy_objective, pgd
    from mimir_hf.finetuning import mae_to_classifier, random_mae_encoder
    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.pretraining import craft_adversarial_pixels

    out, stage = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if stage == "pretrain":
        model = MimirForPreTraining(mimir_config("vit-t", 32, patch_size=4, **tiny))
    else:
        model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(image_size=32, patch_size=4, **tiny)), num_labels=3)
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    for block in model.base_model.layers:  # ViTMAE, ViT and BEiT all keep their blocks in `layers`
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert all(isinstance(p, DTensor) for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(100 + rank)  # every rank sees different images
    for step in range(3):
        x = torch.rand(4, 3, 32, 32, generator=generator)
        if stage == "pretrain":
            adversarial = craft_adversarial_pixels(model, x, epsilon=8 / 255, step_size=10 / 255, steps=1,
                                                   freeze_parameters=False, check_inputs=False)
            loss = model(pixel_values=x, adversarial_pixel_values=adversarial, check_inputs=False).loss
        else:
            y = torch.randint(0, 3, (4,), generator=generator)
            objective = cross_entropy_objective(lambda p: model(pixel_values=p).logits, y)
            adversarial = pgd(objective, x, epsilon=8 / 255, step_size=2 / 255, steps=2, model=model,
                              model_mode="eval", freeze_parameters=False, check_inputs=False)
            loss = torch.nn.functional.cross_entropy(model(pixel_values=adversarial).logits, y)
        assert 0 < (adversarial - x).abs().max() <= 8 / 255 + 1e-6
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    flat = torch.cat([p.detach().full_tensor().flatten() for p in model.parameters()])
    torch.save({"start": start, "end": flat}, os.path.join(out, f"{stage}-{rank}.pt"))
    dist.barrier()  # without it gloo can hang in destroy_process_group while the peer still sends
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_fsdp2_two_cpu_processes_attack_through_the_sharded_module_and_agree(tmp_path, stage):
    script = tmp_path / "fsdp_step.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(script), str(tmp_path), stage]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"{stage}-{rank}.pt") for rank in (0, 1)]
    torch.testing.assert_close(ranks[0]["start"], ranks[1]["start"], rtol=0, atol=0)
    assert not torch.equal(ranks[0]["end"], ranks[0]["start"]), "the parameters did not train"
    torch.testing.assert_close(ranks[0]["end"], ranks[1]["end"], rtol=0, atol=0)
