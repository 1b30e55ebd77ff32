"""mimir_hf.artefacts: the one rule for "a Hub repo id rather than a local path"."""

from __future__ import annotations

from mimir_hf.artefacts import is_hub_id


def test_a_hub_id_is_namespace_slash_name_and_not_a_local_path(tmp_path, monkeypatch) -> None:
    assert is_hub_id("uoft-cs/cifar10") and is_hub_id("org/mimir-vit_t.v2")
    for value in ("builtin:digits", "cifar10", "a/b/c", "/abs/path", "./org/name", "~/x", "", None, 3):
        assert not is_hub_id(value), value
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "run").mkdir(parents=True)
    assert not is_hub_id("outputs/run")  # the same shape, but it is on this machine
