"""pipeline.language.codes: every code and name a library uses maps to Whisper's code, or
`unknown`."""

from __future__ import annotations

import pytest
from faster_whisper.tokenizer import _LANGUAGE_CODES

from scribewatch.pipeline.language.codes import (
    LANGUAGE_LABELS,
    UNKNOWN,
    WHISPER_CODES,
    WHISPER_NAMES,
    codes_for,
    language_label,
    to_iso639_1,
    whisper_name,
)


def test_the_codes_are_exactly_whispers():
    # The installed faster-whisper is the authority: 99 languages, and `yue` since large-v3.
    assert sorted(WHISPER_CODES) == sorted(_LANGUAGE_CODES)
    assert len(WHISPER_CODES) == 100
    assert LANGUAGE_LABELS == set(_LANGUAGE_CODES) | {"unknown"}


@pytest.mark.parametrize("bibliographic, terminology, code", [
    ("ger", "deu", "de"), ("fre", "fra", "fr"), ("chi", "zho", "zh"), ("dut", "nld", "nl"),
    ("cze", "ces", "cs"), ("gre", "ell", "el"), ("rum", "ron", "ro"), ("per", "fas", "fa"),
    ("wel", "cym", "cy"), ("ice", "isl", "is"), ("arm", "hye", "hy"), ("geo", "kat", "ka"),
    ("bur", "mya", "my"), ("tib", "bod", "bo"), ("baq", "eus", "eu"), ("alb", "sqi", "sq"),
    ("mac", "mkd", "mk"), ("may", "msa", "ms"), ("slo", "slk", "sk"), ("mao", "mri", "mi"),
])
def test_iso_639_2_bibliographic_and_terminology_codes(bibliographic, terminology, code):
    assert to_iso639_1(bibliographic) == to_iso639_1(terminology) == code


@pytest.mark.parametrize("value, code", [
    ("en", "en"), ("eng", "en"), ("English", "en"), (" ENGLISH ", "en"), ("en-US", "en"),
    ("pt_BR", "pt"), ("zh-Hans", "zh"), ("Castilian", "es"), ("Flemish", "nl"),
    ("Burmese", "my"), ("Myanmar", "my"), ("Haitian", "ht"), ("haitian creole", "ht"),
    ("jv", "jw"), ("jav", "jw"), ("iw", "he"), ("nb", "no"), ("nob", "no"), ("fil", "tl"),
    ("Deutsch", "de"), ("Mandarin", "zh"), ("cantonese", "yue"), ("yue", "yue"),
    ("haw", "haw"), ("Farsi", "fa"),
])
def test_name_variants_and_tags(value, code):
    assert to_iso639_1(value) == code


@pytest.mark.parametrize("value", [None, "", "  ", "und", "UND", "mul", "zxx", "mis", "qaa",
                                   "qtz", "unknown", "xx", "klingon", "tlh"])
def test_no_language_is_unknown(value):
    assert to_iso639_1(value) is None
    assert language_label(value) == UNKNOWN
    assert whisper_name(value) == UNKNOWN


def test_labels_are_bounded():
    values = ["ger", "deu", "German", "de-AT", "und", None, "garbage", "eng", "Inglés"]
    assert {language_label(v) for v in values} <= LANGUAGE_LABELS
    assert {language_label(v) for v in values} == {"de", "en", UNKNOWN}


def test_whisper_names_as_bazarr_expects_them():
    # Bazarr's /detect-language answer: {"detected_language": "german", "language_code": "de"}
    assert whisper_name("de") == whisper_name("ger") == "german"
    assert whisper_name("en") == "english"
    assert WHISPER_NAMES["ht"] == "haitian creole" and WHISPER_NAMES["my"] == "myanmar"
    assert len(set(WHISPER_NAMES.values())) == len(WHISPER_NAMES)     # one name per code
    # Every name maps back to its code.
    assert all(to_iso639_1(name) == code for code, name in WHISPER_NAMES.items())


def test_codes_for_a_language_cover_its_sidecar_spellings():
    assert {"de", "ger", "deu", "german"} <= codes_for("de")
    assert codes_for("ger") == codes_for("de")
    assert "en" not in codes_for("de")
    assert codes_for("xx") == {"xx"}
