"""pipeline.subtitles.linebreaks: the words a line should not end on, and the cue builder
using them."""

from __future__ import annotations

import pytest

from scribewatch.pipeline.subtitles.cues import build_cues
from scribewatch.pipeline.subtitles.linebreaks import ends_on_function_word, function_words
from scribewatch.pipeline.transcript import Word
from tests.harness.quality import check_readability


def make_words(text: str, start: float = 0.0, step: float = 0.4) -> list[Word]:
    """Whisper-style words, one every `step` seconds: about 14 characters a second."""
    return [Word(start + i * step, start + i * step + step * 0.8, " " + w)
            for i, w in enumerate(text.split())]


@pytest.mark.parametrize("line, expected", [
    ("ask not what", True), ("the price of", True), ("bread and", True), ("(the", True),
    ("your country", False), ("bread and,", False), ("THE", True), ("", False),
    ("over the moon.", False),
])
def test_english_function_words(line, expected):
    assert ends_on_function_word(line) is expected


def test_german_has_its_own_table_and_other_languages_fall_back_to_english():
    assert ends_on_function_word("seit einer Stunde auf", "de")
    assert not ends_on_function_word("seit einer Stunde auf", "en")
    assert ends_on_function_word("mit der", "DE")
    assert function_words("fr") == function_words("en") == function_words(None)


@pytest.mark.parametrize("text", [
    "I put the heavy book on the table next to the old lamp in the hall",
    "She said that the answer was in the letter and not in the book at all",
    "ask not what your country can do for you ask what you can do for your country",
])
def test_a_line_does_not_end_on_an_article_preposition_or_conjunction(text):
    cues = build_cues(make_words(text))
    assert len(cues) == 1 and len(cues[0].lines) == 2
    assert not ends_on_function_word(cues[0].lines[0])
    assert abs(len(cues[0].lines[0]) - len(cues[0].lines[1])) <= 12         # still balanced


def test_line_breaks_follow_the_language():
    words = make_words("Er wartet seit einer Stunde auf den letzten Zug nach Hamburg")
    # English knows no "auf": the most even break is after it.
    assert build_cues(words, language="en")[0].lines[0].endswith(" auf")
    assert build_cues(words, language="de")[0].lines == ("Er wartet seit einer Stunde",
                                                         "auf den letzten Zug nach Hamburg")


def test_a_cue_does_not_end_on_a_function_word_when_it_can_end_elsewhere():
    text = ("we walked along the river until the evening and then we sat down with the others "
            "in the garden of the house for a long time")
    words = make_words(text)
    cues = build_cues(words)
    assert check_readability(cues) == []
    assert len(cues) == 2 and not ends_on_function_word(cues[0].text)
