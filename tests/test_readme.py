"""README.md pastes: every Python block runs as written, every shell block can be pasted into bash."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def _quickstart_checkpoint(root: Path) -> None:
    """What `recipes/pretrain.py` leaves in outputs/quickstart-pretrain, at a tiny size."""
    from mimir_hf.modeling import MimirForPreTraining, mimir_config

    model = MimirForPreTraining(mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(root / "outputs" / "quickstart-pretrain")


def test_the_readme_has_python_and_shell_blocks():
    assert len(_blocks("python")) >= 2 and len(_blocks("bash")) >= 3


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_block_runs_as_written(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _blocks("python")[index]
    if "outputs/quickstart-pretrain" in code:
        _quickstart_checkpoint(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": f"readme_block_{index}"})
    # pasted in a clone, a block leaves nothing that git would list: it writes under the ignored outputs/
    assert {path.name for path in tmp_path.iterdir()} <= {"outputs"}


def test_shell_blocks_paste_into_bash():
    for block in _blocks("bash"):
        command = block.replace("\\\n", " ")
        for line in command.splitlines():
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            # a `<placeholder>` would be read as a redirection
            assert not re.search(r"<[^<>\s]*>", code), f"placeholder in a shell command: {line!r}"
            words = shlex.split(code)
            if words[:2] == ["accelerate", "launch"]:
                # without a config file accelerate lists the defaults it filled in; without -q a failed
                # run's one-line error is followed by the launcher's own traceback
                assert "--config_file" in words and "-q" in words, line
            for word in words:
                if word.startswith("recipes/") and not word.endswith("/"):
                    assert (REPO / word).exists(), f"{word} named in README.md does not exist"
