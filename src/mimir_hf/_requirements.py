"""The oldest dependency versions the code works with, checked at import so that an old install fails with a clear message.

transformers 5.9 is the first release with what `mimir_hf.modeling` imports from ViT-MAE
(`build_2d_sinusoidal_position_embedding`); 5.0, 5.8 fail at import. Probed with the
model, trainer and step tests (test_modeling, test_step_efficiency, test_finetuning, and for 5.9
and 5.17 also test_pretraining): 5.9, 5.12, 5.15, 5.16, 5.17 and 5.25 pass, except that before
5.25 (at least up to 5.17) `AutoImageProcessor` needs torchvision to load the saved image
processor (later releases fall back to PIL). `pyproject.toml` states the same floor, and
`tests/test_dependencies.py` keeps the two in step.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["TRANSFORMERS_MINIMUM", "check_transformers_version"]

TRANSFORMERS_MINIMUM = "5.9.0"


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if not piece.isdigit() else piece
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():  # 5.10.0rc1, 5.10.dev0: the release the pre-release leads to
            break
    return tuple(parts)


def check_transformers_version(installed: str | None = None) -> None:
    """Raise `ImportError` naming the fix when the installed transformers is older than the minimum."""
    if installed is None:
        try:
            installed = version("transformers")
        except PackageNotFoundError:  # not installed: the import of transformers will say so
            return
    if _release(installed) < _release(TRANSFORMERS_MINIMUM):
        raise ImportError(
            f"mimir-hf needs transformers >= {TRANSFORMERS_MINIMUM}, found {installed}: "
            f"pip install -U 'transformers>={TRANSFORMERS_MINIMUM}'"
        )
