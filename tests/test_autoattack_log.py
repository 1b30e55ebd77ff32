"""autoattack.log says up front why pyautoattack's own 'initial accuracy' reads 100%."""

import logging

from mimir_hf.evaluation.autoattack import capture_autoattack_log


def test_the_log_header_explains_the_clean_correct_subset(tmp_path):
    path = tmp_path / "autoattack.log"
    with capture_autoattack_log(path):
        logging.getLogger("auto-attack").info("initial accuracy: 100.00%")
    text = path.read_text()
    header, _, body = text.partition("initial accuracy: 100.00%")
    assert "classifies correctly without attack" in header and "100% by construction" in header
    assert "robustness.json" in header and body.strip() == ""
