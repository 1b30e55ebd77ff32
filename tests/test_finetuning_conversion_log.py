"""What a user reads when a pretraining checkpoint becomes a classifier: one line per fact, no tables.

Also the canary for the transformers LOAD REPORT format that `conversion._DecoderOnlyReportFilter`
reads: if upstream changes it, the report reappears and the first test fails.
"""

from __future__ import annotations

import logging

import pytest
import torch

from mimir_hf.finetuning import load_encoder, mae_to_classifier
from mimir_hf.finetuning.conversion import _DecoderOnlyReportFilter
from mimir_hf.modeling import MimirForPreTraining, mimir_config


@pytest.fixture(scope="module")
def pretraining_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(folder)
    return folder


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def clear(self) -> None:
        self.records.clear()


@pytest.fixture
def library_log():
    logger = logging.getLogger("mimir_hf.finetuning.conversion")
    handler = _Records()
    logger.addHandler(handler)  # on the logger itself: reached even where a recipe turned propagation off
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.setLevel(previous)
    logger.removeHandler(handler)


def test_loading_the_encoder_drops_the_decoder_in_one_line(pretraining_dir, capfd, library_log):
    encoder = load_encoder(pretraining_dir)
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err
    messages = [r.getMessage() for r in library_log.records]
    assert sum("decoder is not part of a classifier" in m for m in messages) == 1
    # silencing the report lost nothing: the encoder holds the checkpoint's encoder weights
    reference = MimirForPreTraining.from_pretrained(pretraining_dir).vit.state_dict()
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0)


def test_other_load_reports_still_show():
    report_filter = _DecoderOnlyReportFilter()

    def record(text: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 0, text, None, None)

    decoder_only = ("ViTMAEModel LOAD REPORT from: x\nKey | Status | |\n---+---+\n"
                    "decoder.decoder_pred.bias | \x1b[33mUNEXPECTED\x1b[0m | |\ndecoder.mask_token | UNEXPECTED | |\n")
    assert not report_filter.filter(record(decoder_only))
    with_missing = decoder_only + "layers.0.mlp.fc1.weight | MISSING | |\n"
    assert report_filter.filter(record(with_missing))
    encoder_unexpected = "ViTMAEModel LOAD REPORT from: x\nKey | Status | |\nvit.layers.0.x | UNEXPECTED | |\n"
    assert report_filter.filter(record(encoder_unexpected))
    assert report_filter.filter(record("an unrelated warning"))


def test_position_interpolation_is_logged_once(pretraining_dir, library_log):
    mae_to_classifier(pretraining_dir, num_labels=3, image_size=32)
    lines = [r.getMessage() for r in library_log.records if "interpolated" in r.getMessage()]
    assert lines == ["Position embeddings interpolated from a 4x4 to a 8x8 patch grid (bicubic)."]
    library_log.clear()
    mae_to_classifier(pretraining_dir, num_labels=3, image_size=16)
    assert not [r for r in library_log.records if "interpolated" in r.getMessage()]
