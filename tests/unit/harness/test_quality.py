"""tests.harness.quality: the word error rate the tests and the benchmarks score transcripts with.

(parse_srt and check_readability are exercised against the renderers in
tests/unit/pipeline/test_subtitles.py.)
"""

from __future__ import annotations

import pytest

from tests.harness.quality import word_error_rate


@pytest.mark.parametrize("reference, hypothesis, expected", [
    ("the cat sat down", "the cat sat down", 0.0),
    ("The cat, sat down!", "the cat sat down", 0.0),          # case and punctuation ignored
    ("the cat sat down", "the dog sat down", 0.25),           # substitution
    ("the cat sat down", "the cat down", 0.25),               # deletion
    ("the cat sat down", "the cat sat right down", 0.25),     # insertion
    ("the cat sat down", "", 1.0),
    ("", "", 0.0),
    ("", "anything", 1.0),
])
def test_word_error_rate(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)
