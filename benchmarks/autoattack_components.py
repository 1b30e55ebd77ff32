"""What does measuring each AutoAttack component cost?

    python benchmarks/autoattack_components.py                                   # random small ViT, 32 images
    python benchmarks/autoattack_components.py --checkpoint outputs/quickstart-finetune --data builtin:digits

`mimir_hf.evaluation` runs AutoAttack's cascade one component at a time on the points still standing
(so that `robustness.json` can say what each component broke and how long it took), where
pyautoattack's `run_standard_evaluation` runs the whole cascade in one call. Both are timed on the
same clean-correct images, interleaved, and the script checks that they break the same points. The
extra cost per component is pyautoattack's own start-up checks (a few forward passes), so the ratio
should be close to 1 for any model whose attacks take more than a moment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_description, median  # noqa: E402
from eval_cost import random_classifier  # noqa: E402

from mimir_hf.evaluation import load_classifier  # noqa: E402
from mimir_hf.evaluation.attack_specs import AttackSettings, parse_attack_name  # noqa: E402
from mimir_hf.evaluation.autoattack import _build_autoattack, run_autoattack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="A classifier directory (default: a random small ViT).")
    parser.add_argument("--data", default="builtin:digits")
    parser.add_argument("--num_images", type=int, default=32)
    parser.add_argument("--components", nargs="+", default=["apgd-ce", "apgd-t"],
                        help="AutoAttack components (the standard suite: apgd-ce apgd-t fab-t square).")
    parser.add_argument("--epsilon", type=float, default=8 / 255)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    if args.checkpoint:
        from mimir_hf.evaluation.streaming import prepare_evaluation_data

        model, _, processor = load_classifier(args.checkpoint, device="cpu")
        size = int(model.model.config.image_size)
        data = prepare_evaluation_data(args.data, split="test", dataset_config=None, image_column=None,
                                       label_column=None, image_size=size, num_samples=4 * args.num_images)
        x, y = next(data.batches([list(range(len(data)))]))
    else:
        model = random_classifier("small")
        x = torch.rand(4 * args.num_images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y = model(x).argmax(1)
    model.eval()
    with torch.no_grad():
        keep = (model(x).argmax(1) == y).nonzero().flatten()[: args.num_images]
    x, y = x[keep], y[keep]
    settings = AttackSettings(epsilon=args.epsilon, autoattack_version="custom", autoattack_attacks=tuple(args.components))
    spec = parse_attack_name("autoattack", settings)
    num_classes = int(model(x[:1]).shape[1])

    def packaged() -> torch.Tensor:
        adversary = _build_autoattack(spec, model, "custom", list(args.components), num_classes, x.device)
        with torch.random.fork_rng():
            _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=x.shape[0])
        return y_adv == y

    def per_component() -> torch.Tensor:
        details: dict = {}
        adversarial = run_autoattack(spec, model, x, y, details)
        with torch.no_grad():
            return model(adversarial).argmax(1) == y

    times = {"packaged": [], "per_component": []}
    robust = {}
    for _ in range(args.repeats):
        for name, fn in (("packaged", packaged), ("per_component", per_component)):
            start = time.perf_counter()
            robust[name] = fn()
            times[name].append(time.perf_counter() - start)
    print(machine_description())
    print(f"{x.shape[0]} clean-correct images, components {args.components}, ε = {args.epsilon:.5f}, "
          f"{args.repeats} interleaved repeats")
    for name, values in times.items():
        print(f"  {name:>14}: median {median(values):7.2f} s  (all: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"  ratio per-component / packaged: {median(times['per_component']) / median(times['packaged']):.3f}")
    same = bool(torch.equal(robust["packaged"], robust["per_component"]))
    print(f"  robust after AutoAttack: packaged {int(robust['packaged'].sum())}, per-component "
          f"{int(robust['per_component'].sum())} of {x.shape[0]}; same points: {same}")


if __name__ == "__main__":
    main()
