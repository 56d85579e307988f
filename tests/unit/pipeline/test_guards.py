"""pipeline.guards: hallucination findings on made-up loops and bursts, and on real speech."""

from __future__ import annotations

import random
import re

import pytest

from scribewatch.pipeline.guards import MAX_FINDINGS, check_transcript, normalize_text
from scribewatch.pipeline.transcript import Segment, Transcript, Word
from tests.harness import JFK_TEXT
from tests.harness.quality import word_error_rate


def timed_segment(text: str, start: float, seconds: float) -> Segment:
    """A segment whose words are spread evenly over `seconds`, Whisper style."""
    tokens = text.split()
    step = seconds / len(tokens)
    words = tuple(Word(start + i * step, start + (i + 0.9) * step, " " + t)
                  for i, t in enumerate(tokens))
    return Segment(start, start + seconds, " " + text, words)


def transcript_of(*segments: Segment) -> Transcript:
    return Transcript("en", 1.0, max((s.end for s in segments), default=0.0), segments)


# Ordinary speech at ~2.5 words/s, 13 letters/s: what must never be flagged.
NORMAL = ("So we looked at the numbers again last week. The costs went up a little, mostly "
          "because of the new building, but the team thinks it is worth it. Anyway, thank you "
          "all for coming, and see you next month.")
MORE = ("Next on the list is the summer schedule. Most people want the long weekend in July, "
        "so we will move the review to the week after.")


# -- normalize_text -----------------------------------------------------------------------------
def test_normalize_text():
    assert normalize_text("  Don't, SIR!  well-known…\n\t“Quoted” ") == \
        "dont sir well known quoted"
    assert normalize_text("Grüße, ÉCOLE.") == normalize_text("GRÜSSE école") == \
        "grüsse école"
    assert normalize_text("") == ""


# -- findings --------------------------------------------------------------------------------
def test_normal_speech_has_no_findings():
    assert check_transcript(transcript_of(timed_segment(NORMAL, 0.0, 16.0))) == []
    # The same without word timestamps, and split into short segments.
    sentences = re.split(r"(?<=\.) ", NORMAL)
    assert check_transcript(transcript_of(
        *(Segment(5.0 * i, 5.0 * i + 4.5, " " + s) for i, s in enumerate(sentences)))) == []
    assert check_transcript(transcript_of()) == []


def test_long_segment_of_ordinary_words_does_not_compress_too_well():
    # Whole, this text compresses 2.57:1, as any long English does; Whisper's threshold is
    # calibrated on one 30 s window of text, and per window it is 2.14.
    common = ("the of and to a in that is was he for it with as his on be at by this had not are "
              "but from or have an they which one you were her all she there would their we him "
              "been has when who will more no if out so said what up its about into than them "
              "can only other new some could time these two may then do first any my now such "
              "like our over man me even most made after also did many before must through back "
              "years where much your way well down should because each just those people how too "
              "little state good very make world still own see men work long get here between "
              "both life being under never day same another know while last might us great old "
              "year off come since against go came right used take three").split()
    chooser = random.Random(0)
    text = " ".join(chooser.choice(common) for _ in range(800))
    assert len(text) > 3000
    assert check_transcript(transcript_of(timed_segment(text, 0.0, 300.0))) == []


def test_sentence_repeated_three_times_in_a_row_is_flagged():
    looping = transcript_of(
        timed_segment("Okay, let's start.", 0.0, 2.0),
        *(timed_segment(text, 2.0 + i, 1.0) for i, text in
          enumerate(["Thank you.", "thank you", "THANK YOU!", "Thank you."])))
    findings = check_transcript(looping)
    assert findings == ['sentence repeated 4 times in a row at 2.0 s: "thank you"']


def test_repeats_inside_one_segment_without_words_are_flagged():
    segment = Segment(10.0, 14.0, " Bye. Bye. Bye. See you.")
    assert any("repeated 3 times" in f and "at 10.0 s" in f
               for f in check_transcript(transcript_of(segment)))


def test_two_repeats_are_speech():
    assert check_transcript(transcript_of(timed_segment("No. No. Please stop.", 0.0, 2.0))) == []


def test_phrase_loop_is_flagged_at_the_word_where_it_starts():
    text = "We had to focus on the rest of the rest of the rest of the rest of the rest."
    findings = check_transcript(transcript_of(timed_segment(NORMAL, 0.0, 16.0),
                                              timed_segment(text, 20.0, 8.0)))
    assert findings == ['phrase loop at 22.1 s: "the rest of" 4 times']


def test_short_stutters_are_not_loops():
    text = "I'm sorry, I'm sorry, I'm sorry, I did not mean it, no no no."
    assert check_transcript(transcript_of(timed_segment(text, 0.0, 6.0))) == []


def test_text_that_compresses_too_well_is_flagged():
    # An alternation with no back-to-back repeat of a phrase, so only the ratio catches it.
    text = " ".join(f"item {'abcdefghij'[i % 10]}{i % 7}" for i in range(140))
    findings = check_transcript(transcript_of(Segment(0.0, 300.0, " " + text)))
    assert any(f.startswith("segment at 0.0 s compresses too well") for f in findings), findings


@pytest.mark.parametrize("text, seconds", [
    (" ".join("abcdefghijklmnopqrst"), 2.0),        # 9 words/s but 9 letters/s: words/s alone
    ("incomprehensibilities counterrevolutionaries " * 2, 2.0),        # 38 letters/s alone
])
def test_impossible_density_over_a_segment_is_flagged(text, seconds):
    segment = Segment(1.0, 1.0 + seconds, " " + text)                  # no words: segment only
    findings = check_transcript(transcript_of(segment))
    assert any(f.startswith("segment at 1.0 s is too dense for speech") for f in findings), findings


def test_dense_burst_inside_a_long_batched_segment_is_found_through_its_cue():
    burst = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"
    words = (timed_segment(NORMAL, 0.0, 16.0).words + timed_segment(burst, 17.0, 1.2).words
             + timed_segment(MORE, 19.0, 11.0).words)
    segment = Segment(0.0, 30.0, " ".join(w.text.strip() for w in words), words)
    assert check_transcript(transcript_of(segment)) == [
        "cue at 17.0 s is too dense for speech: 42 characters/s, 8.3 words/s over 1.2 s"]


def test_density_needs_more_than_a_second():
    assert check_transcript(transcript_of(timed_segment("one two three four five six seven",
                                                        0.0, 0.9))) == []


def test_findings_are_capped():
    segments = [timed_segment(f"Line {n}. Line {n}. Line {n}.", 10.0 * n, 3.0) for n in range(40)]
    findings = check_transcript(transcript_of(*segments))
    assert len(findings) == MAX_FINDINGS
    assert findings[-1] == f"… and {40 - MAX_FINDINGS + 1} more findings"


# -- real speech ------------------------------------------------------------------------------
def test_real_jfk_transcript_is_clean(real_speech):
    transcript = real_speech["jfk.flac"]
    assert check_transcript(transcript) == []
    assert word_error_rate(JFK_TEXT, transcript.text) < 0.10


def test_real_licence_reading_is_clean_and_its_hallucinated_tail_is_caught(real_speech):
    """tiny.en reads the licence well for 30 s, hears nothing in the German reading, then
    invents "I am very happy to be here, I am very happy…" at the end (at temperature 0, the
    `real_speech` fixture's: the same words every run). The speech must give no finding; the
    invention must."""
    transcript = real_speech["multilingual.mp3"]
    speech = [s for s in transcript.segments if s.end <= 31.0]
    assert len(speech) >= 5 and speech[0].text.strip().startswith("Permission is hereby granted")
    assert check_transcript(transcript_of(*speech)) == []
    findings = check_transcript(transcript)
    assert any(f.startswith("phrase loop") for f in findings), findings
    assert all(float(re.search(r" at (\d+\.\d) s", f).group(1)) > 50 for f in findings), findings
