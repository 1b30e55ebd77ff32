"""What a user reads when a pretraining checkpoint becomes a classifier: one line per fact, no tables.

A pretraining checkpoint is loaded as the class it was saved from, so transformers has no decoder
weights to report as unexpected; a report that does appear is a real mismatch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
import torch
from transformers import ViTMAEModel

from mimir_hf.finetuning import load_encoder, mae_to_classifier
from mimir_hf.modeling import MimirForPreTraining, mimir_config

_LOAD_REPORT_WORDS = ("LOAD REPORT", "UNEXPECTED", "MISSING", "MISMATCH")


@pytest.fixture(scope="module")
def pretraining_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(pretraining_dir, tmp_path_factory):
    """A `vit_mae` checkpoint without a decoder (a bare `ViTMAEModel` saved on its own)."""
    folder = tmp_path_factory.mktemp("encoder")
    MimirForPreTraining.from_pretrained(pretraining_dir).vit.save_pretrained(folder)
    return folder


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def clear(self) -> None:
        self.records.clear()

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@contextlib.contextmanager
def _recorded(name: str, level: int) -> Iterator[_Records]:
    logger = logging.getLogger(name)
    handler = _Records()
    logger.addHandler(handler)  # on the logger itself: reached even where propagation is off
    previous = logger.level
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.setLevel(previous)
        logger.removeHandler(handler)


@pytest.fixture
def library_log():
    with _recorded("mimir_hf.finetuning", logging.INFO) as handler:
        yield handler


@pytest.fixture
def transformers_log():
    """transformers' warnings (its LOAD REPORT is one), whatever stream its own handler writes to."""
    with _recorded("transformers", logging.WARNING) as handler:
        yield handler


def _load_report_shown(log: _Records) -> bool:
    return any(word in message for message in log.messages() for word in _LOAD_REPORT_WORDS)


def test_stock_loading_of_the_bare_encoder_would_report_the_decoder(pretraining_dir, transformers_log):
    """The control: transformers still reports what the next tests must not show, and the test sees it."""
    ViTMAEModel.from_pretrained(pretraining_dir)
    assert _load_report_shown(transformers_log)
    assert any("decoder." in message for message in transformers_log.messages())


def test_converting_a_pretraining_checkpoint_reports_no_key_mismatch(pretraining_dir, transformers_log, library_log):
    encoder = load_encoder(pretraining_dir)
    assert not _load_report_shown(transformers_log)
    assert sum("decoder is not part of a classifier" in m for m in library_log.messages()) == 1
    # the encoder holds the checkpoint's encoder weights, all of them
    reference = MimirForPreTraining.from_pretrained(pretraining_dir).vit.state_dict()
    assert set(encoder.state_dict()) == set(reference)
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0)
    mae_to_classifier(pretraining_dir, num_labels=3)
    assert not _load_report_shown(transformers_log)


def test_an_encoder_only_checkpoint_loads_without_a_report(encoder_dir, transformers_log, library_log):
    encoder = load_encoder(encoder_dir)
    assert not _load_report_shown(transformers_log)
    assert not any("decoder" in m for m in library_log.messages())  # it had none to drop
    assert isinstance(encoder, ViTMAEModel)


def test_position_interpolation_is_logged_once(pretraining_dir, library_log):
    mae_to_classifier(pretraining_dir, num_labels=3, image_size=32)
    lines = [m for m in library_log.messages() if "interpolated" in m]
    assert lines == ["Position embeddings interpolated from a 4x4 to a 8x8 patch grid (bicubic)."]
    library_log.clear()
    mae_to_classifier(pretraining_dir, num_labels=3, image_size=16)
    assert not [m for m in library_log.messages() if "interpolated" in m]
