"""The declared dependency floors are the true ones, and an older transformers fails with a clear message."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from mimir_hf._requirements import TRANSFORMERS_MINIMUM, _release, check_transformers_version

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def _requirement(name: str) -> str:
    (spec,) = [d for d in PYPROJECT["project"]["dependencies"] if re.match(rf"{name}\b", d)]
    return spec


def test_pyproject_states_the_transformers_minimum_the_code_checks():
    spec = _requirement("transformers")
    floor = re.search(r">=\s*([0-9.]+)", spec).group(1)
    assert _release(floor) == _release(TRANSFORMERS_MINIMUM)[: len(_release(floor))], spec


def test_installed_transformers_meets_the_minimum():
    assert _release(version("transformers")) >= _release(TRANSFORMERS_MINIMUM)
    check_transformers_version()


def test_an_older_transformers_is_refused_with_the_fix():
    with pytest.raises(ImportError, match=r"transformers >= 5\.9\.0, found 5\.8\.0.*pip install -U"):
        check_transformers_version("5.8.0")
    check_transformers_version("5.9.0")
    check_transformers_version("5.10.0.dev0")
    check_transformers_version("6.0.0rc1")


def test_the_api_that_sets_the_minimum_is_still_there():
    """Canary: the newest transformers API the code imports (added in 5.9)."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    assert callable(build_2d_sinusoidal_position_embedding)


def test_torch_is_not_capped():
    assert "<" not in _requirement("torch")


def test_the_stages_import_and_train_without_datasets_or_evaluate(tmp_path):
    """The GPU machine has neither (benchmarks/gpu_check.py carries only pyautoattack and pytest):
    training and evaluating a model object must import without them."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['datasets'] = None; sys.modules['evaluate'] = None\n"
        "import mimir_hf.pretraining, mimir_hf.finetuning, mimir_hf.evaluation\n"
        "from mimir_hf.evaluation import AttackSettings, build_attack, evaluate_robustness\n"
        "import torch\n"
        "from mimir_hf.modeling import MimirForPreTraining, mimir_config\n"
        "from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments\n"
        "model = MimirForPreTraining(mimir_config('vit-t', 16, patch_size=4, hidden_size=32, num_hidden_layers=1,"
        " num_attention_heads=2, intermediate_size=64))\n"
        "data = [{'pixel_values': torch.rand(3, 16, 16)} for _ in range(4)]\n"
        "args = MimirTrainingArguments(output_dir=sys.argv[1], per_device_train_batch_size=2, max_steps=1,"
        " use_cpu=True, report_to='none', save_strategy='no', disable_tqdm=True)\n"
        "MimirTrainer(model=model, args=args, train_dataset=data).train()\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
