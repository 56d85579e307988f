"""Words a subtitle line should not end on, per language.

A reader takes each line as a unit: a line ending on "the", "of" or "and" leaves the phrase
hanging ("ask not what / your country"). Subtitling guides (BBC, Netflix) ask for the break
before such a word instead. The tables are deliberately small: articles, prepositions,
conjunctions and the determiners that open a noun phrase. A language without a table gets the
English one, which does no harm where its words do not occur.
"""

from __future__ import annotations

_ENGLISH = frozenset("""
a an the
my your his her its our their this these those
of to in on at by for from with without into onto upon about above below over under after
before between through during against among across toward towards via per like than as
and or but nor yet so if because that whether while although though unless until since
what which who whom whose where when how
""".split())

_GERMAN = frozenset("""
der die das den dem des ein eine einen einem einer eines
mein meine dein deine sein seine ihr ihre unser unsere euer eure
von zu zum zur in im an am auf aus bei beim mit nach seit vor hinter über unter neben
zwischen durch für gegen ohne um bis ab
und oder aber sondern denn dass ob weil wenn als wie damit obwohl während sowie
""".split())

_TABLES: dict[str, frozenset[str]] = {"en": _ENGLISH, "de": _GERMAN}

# Punctuation a word may carry that does not change what it is ("the" in "(the").
_STRIP = "\"'“”‘’«»()[]{}¿¡"


def function_words(language: str | None) -> frozenset[str]:
    """The words a line should not end on in this ISO 639-1 language (English by default)."""
    return _TABLES.get((language or "en").lower(), _ENGLISH)


def ends_on_function_word(text: str, language: str | None = "en") -> bool:
    """Whether `text` (a line, or the word before a break) ends on such a word. A word that
    carries its own punctuation ("and," "the.") ends a clause and does not count."""
    words = text.split()
    if not words:
        return False
    last = words[-1].strip(_STRIP)
    if not last or not last[-1].isalpha():
        return False
    return last.lower() in function_words(language)
