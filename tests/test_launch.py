"""One reading of the launcher's environment: launched distributed, this process's rank, the main process."""

from __future__ import annotations

import pytest

from mimir_hf.launch import is_main_process, launched_distributed, process_rank


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_python_process_is_alone_and_main(clean_environment):
    assert not launched_distributed() and process_rank() == 0 and is_main_process()


def test_torchrun_processes(clean_environment):
    clean_environment.setenv("LOCAL_RANK", "0")
    clean_environment.setenv("WORLD_SIZE", "1")
    assert launched_distributed() and is_main_process()  # a launcher started it, even alone
    clean_environment.setenv("WORLD_SIZE", "2")
    clean_environment.setenv("RANK", "1")
    clean_environment.setenv("LOCAL_RANK", "1")
    assert launched_distributed() and process_rank() == 1 and not is_main_process()


def test_evaluation_shards_follow_the_same_reading(clean_environment):
    from mimir_hf.evaluation.sharding import ProcessShard, current_shard

    assert current_shard() == ProcessShard()  # not launched: one shard, no process group started
