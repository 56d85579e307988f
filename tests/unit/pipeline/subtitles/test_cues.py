"""pipeline.subtitles.cues: cue rules on hand-made word lists, the renderers, and real speech."""

from __future__ import annotations

import json
import math

import pytest

from scribewatch.pipeline.guards import check_transcript
from scribewatch.pipeline.speech import SpeechRegion
from scribewatch.pipeline.subtitles.cues import (
    MIN_GAP_MS,
    Cue,
    build_cues,
    render_json,
    render_srt,
    render_txt,
    render_vtt,
)
from scribewatch.pipeline.transcript import Segment, Transcript, Word
from tests.harness import JFK_TEXT
from tests.harness.quality import check_readability, parse_srt, word_error_rate


def make_words(text: str, start: float = 0.0, step: float = 0.4) -> list[Word]:
    """Whisper-style words (leading space), one every `step` seconds, each 80 % of a step long:
    about 14 characters a second, an ordinary speaking rate."""
    return [Word(start + i * step, start + i * step + step * 0.8, " " + w)
            for i, w in enumerate(text.split())]


# Words at one instant leave no time to read them: such tests check structure, not timing.
NO_TIMING_LIMITS = {"max_cps": math.inf, "min_seconds": 0.0}


def cue_texts(cues: list[Cue]) -> list[str]:
    return [c.text for c in cues]


def assert_well_formed(cues: list[Cue], words: list[Word], **limits) -> None:
    """Within limits, in order, not overlapping, and the words come back in order, unchanged."""
    assert check_readability(cues, **limits) == []
    assert " ".join(cue_texts(cues)) == " ".join(w.text.strip() for w in words if w.text.strip())


# -- building cues --------------------------------------------------------------------------
def test_empty_input_gives_no_cues():
    assert build_cues([]) == []
    assert build_cues([Word(0.0, 1.0, "  "), Word(1.0, 2.0, "")]) == []


def test_short_text_is_one_single_line_cue_without_whisper_spaces():
    cues = build_cues([Word(0.0, 0.3, " Hello"), Word(0.3, 0.6, "  there.")])
    assert cues == [Cue(0.0, 0.8, ("Hello there.",))]   # extended to min_seconds: nothing follows
    assert cues[0].text == "Hello there."


def test_long_run_respects_line_limits_with_fewest_cues():
    text = ("the committee reviewed every proposal submitted during the spring session and "
            "decided that most of them needed considerably more detailed financial planning "
            "before anybody could approve the budget for the following year in any reasonable "
            "form whatsoever because nobody had checked the numbers carefully enough yet")
    words = make_words(text)
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert all(len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines) for c in cues)
    # Fewest possible cues: greedy line filling gives the fewest lines, two lines per cue.
    lines, width = 1, 0
    for w in text.split():
        if width and width + 1 + len(w) > 42:
            lines, width = lines + 1, len(w)
        else:
            width += len(w) + (1 if width else 0)
    assert len(cues) == math.ceil(lines / 2)


def test_smaller_limits_are_honoured():
    words = make_words("one two three four five six seven eight nine ten eleven twelve", step=0.5)
    cues = build_cues(words, max_line_chars=16, max_lines=1, max_seconds=2.0)
    assert_well_formed(cues, words, max_line_chars=16, max_lines=1, max_seconds=2.0)
    assert len(cues) > 3


def test_cues_last_at_most_max_seconds():
    words = make_words(" ".join(["slowly"] * 20), step=1.0)     # one word a second, no pauses
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert len(cues) >= 3
    assert max(c.end - c.start for c in cues) <= 7.0


def test_one_very_long_word_is_clipped_to_max_seconds():
    cues = build_cues([Word(3.0, 15.0, " Hmmmm.")])
    assert cues == [Cue(3.0, 10.0, ("Hmmmm.",))]


@pytest.mark.parametrize("gap, expected", [
    (1.0, ["hello there", "general kenobi"]),      # > pause_seconds: a new cue, even mid-phrase
    (0.5, ["hello there general kenobi"]),          # a breath: same cue
])
def test_pause_starts_a_new_cue(gap, expected):
    words = make_words("hello there") + make_words("general kenobi", start=0.54 + gap)
    cues = build_cues(words)
    assert cue_texts(cues) == expected
    if len(cues) == 2:
        assert cues[1].start == words[2].start


@pytest.mark.parametrize("end", [".", "?", "!", "…"])
def test_breaks_after_sentence_end_rather_than_filling_the_cue(end):
    first = f"The meeting is over{end}"
    second = "Please remember to send your notes to the whole team before Friday afternoon."
    words = make_words(f"{first} {second}")
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert cue_texts(cues) == [first, second]


def test_breaks_after_clause_punctuation_when_cue_is_full_enough():
    words = make_words("When the meeting finally started at nine in the morning, "
                       "nobody in the room had read the agenda at all")
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert cue_texts(cues) == ["When the meeting finally started at nine in the morning,",
                               "nobody in the room had read the agenda at all"]


def test_no_lonely_cue_after_an_early_comma():
    # 83 characters that do not wrap into two lines, so they must split; "Well," + the rest
    # (which fits one cue) is a valid split, and must lose to a balanced one.
    words = make_words("Well, the committee read every proposal that came in and then rejected "
                       "most of them")
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert len(cues) == 2
    assert cues[0].text != "Well,"
    assert abs(len(cues[0].text) - len(cues[1].text)) < 15        # balanced instead


def test_two_lines_break_at_the_most_even_point():
    text = "the quick brown fox jumps over the lazy dog while everyone watches closely"
    cues = build_cues(make_words(text))
    assert len(cues) == 1 and len(cues[0].lines) == 2
    top, bottom = cues[0].lines
    words = text.split()
    most_even = min(abs(len(" ".join(words[:i])) - len(" ".join(words[i:])))
                    for i in range(1, len(words)))
    assert abs(len(top) - len(bottom)) == most_even
    assert f"{top} {bottom}" == text                                 # no word split


def test_line_break_prefers_nearby_punctuation_but_not_far_off_centre():
    near = build_cues(make_words("We spoke about the plan, and they were not very happy about it"))
    assert near[0].lines == ("We spoke about the plan,", "and they were not very happy about it")
    far = build_cues(make_words("So, we spoke about the plan and they were not very happy about "
                                "it at all"))
    assert far[0].lines[0] != "So,"
    assert abs(len(far[0].lines[0]) - len(far[0].lines[1])) <= 2


def test_text_that_fits_one_line_stays_on_one_line():
    cues = build_cues(make_words("Short and sweet, this fits on a line."))
    assert cues[0].lines == ("Short and sweet, this fits on a line.",)


def test_cues_never_overlap_even_when_words_do():
    # Whisper's last word of a sentence sometimes ends after the next word has started.
    words = make_words("The meeting is over. Please remember to send your notes to the whole "
                       "team before Friday afternoon.")
    words[3] = Word(words[3].start, words[4].start + 0.2, words[3].text)      # " over."
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert cue_texts(cues)[0] == "The meeting is over."
    # The next cue starts on its word; this one ends two frames before it (MIN_GAP_MS).
    assert cues[1].start == words[4].start
    assert round((cues[1].start - cues[0].end) * 1000) == MIN_GAP_MS


def test_words_out_of_order_still_give_ordered_cues():
    words = make_words("First sentence.", start=5.0) + make_words("Second one.", start=2.0)
    cues = build_cues(words, max_line_chars=16, max_lines=1)
    # No time is left for the first cue: broken timestamps, not a reading-speed question.
    assert_well_formed(cues, words, max_line_chars=16, max_lines=1, **NO_TIMING_LIMITS)
    assert cue_texts(cues) == ["First sentence.", "Second one."]


def test_short_cue_extends_into_free_room_but_never_over_the_next():
    roomy = build_cues([Word(1.0, 1.2, " Yes."), Word(3.0, 3.4, " Okay"), Word(3.4, 3.9, " then.")])
    assert (roomy[0].start, roomy[0].end) == (1.0, 1.8)
    assert roomy[1].end == 3.9                                      # long enough already
    # "Yes." alone would get 0.5 s before "Okay." starts: below min_seconds, so the two share a
    # cue even across the pause.
    tight = build_cues([Word(1.0, 1.2, " Yes."), Word(1.5, 2.5, " Okay.")], pause_seconds=0.2)
    assert tight == [Cue(1.0, 2.5, ("Yes. Okay.",))]
    assert check_readability(tight) == []


def reading_speed(cue: Cue) -> float:
    return len(cue.text) / (cue.end - cue.start)


def test_fast_speech_stays_on_screen_into_the_silence_for_reading():
    # 40 characters in 1.7 s (24 per second), then 0.5 s of silence.
    fast = make_words("This sentence is spoken far too quickly.", step=0.22)
    words = fast + make_words("Then a calm one.", start=2.2)
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert cue_texts(cues) == ["This sentence is spoken far too quickly.", "Then a calm one."]
    # 40 / 20 per second needs 2.0 s; the 0.2 s left before the next cue is under half a second,
    # so the cue is chained to it: on until two frames before the next one.
    assert (cues[0].start, cues[0].end) == (0.0, 2.2 - MIN_GAP_MS / 1000)
    assert reading_speed(cues[0]) <= 20.0


def test_too_little_silence_moves_the_cut_instead_of_rushing_the_reader():
    # Cut at the full stop, the fast sentence would get 1.7 s: 23.5 characters a second.
    words = (make_words("This sentence is spoken far too quickly.", step=0.22)
             + make_words("Then a calm and slow sentence follows it here.", start=1.7, step=0.6))
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert max(reading_speed(c) for c in cues) <= 20.0 + 1e-9


def test_reading_speed_is_a_parameter():
    words = make_words("This sentence is spoken far too quickly.", step=0.22)
    assert build_cues(words, max_cps=25.0)[0].end == pytest.approx(1.6)     # 40 / 25
    assert build_cues(words, max_cps=10.0)[0].end == pytest.approx(4.0)
    with pytest.raises(ValueError):
        build_cues(words, max_cps=0)


def test_a_word_longer_than_a_line_is_hard_wrapped():
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3     # 135 characters
    words = [Word(0.0, 0.5, " see"), Word(0.5, 9.5, " " + long_word), Word(9.5, 10.0, " now")]
    cues = build_cues(words)
    assert check_readability(cues) == []
    lines = [line for c in cues for line in c.lines]
    assert all(len(line) <= 42 for line in lines)
    assert long_word in "".join(line.removeprefix("see ").removesuffix(" now") for line in lines)
    assert lines[0].startswith("see") and lines[-1].endswith("now")


def test_a_long_word_that_fits_one_cue_is_not_split_across_cues():
    long_word = "x" * 35 + "y" * 35                 # two lines' worth
    words = [Word(0.0, 0.5, " hello"), Word(0.5, 1.0, " there"), Word(1.0, 5.0, " " + long_word),
             Word(5.0, 5.5, " and"), Word(5.5, 6.0, " goodbye"), Word(6.0, 6.5, " then")]
    cues = build_cues(words)
    assert check_readability(cues) == []
    assert [c.lines for c in cues] == [("hello there",), ("x" * 35, "y" * 35),
                                       ("and goodbye then",)]


def test_words_without_spaces_in_cjk_join_without_spaces():
    words = [Word(0.0, 0.4, "我们"), Word(0.4, 0.8, "今天"), Word(0.8, 1.2, "开会。")]
    cues = build_cues(words)
    assert cue_texts(cues) == ["我们今天开会。"]


@pytest.mark.parametrize("words", [
    [Word(2.0, 1.0, " backwards"), Word(2.0, 2.0, " zero"), Word(1.5, 1.5, " earlier"),
     Word(2.1, 2.2, " fine.")],
    [Word(5.0, 5.0, f" w{i}") for i in range(80)],                 # everything at one instant
    [Word(0.0, 0.0, " a"), Word(0.0, 0.0, " b."), Word(0.0, 0.0, " c."), Word(0.0, 0.0, " d.")],
])
def test_broken_timestamps_do_not_crash_and_stay_valid(words):
    cues = build_cues(words)
    assert_well_formed(cues, words, **NO_TIMING_LIMITS)
    assert all(c.end > c.start for c in cues)


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError):
        build_cues(make_words("a b"), max_line_chars=0)
    with pytest.raises(ValueError):
        build_cues(make_words("a b"), min_seconds=8.0, max_seconds=7.0)


# -- renderers --------------------------------------------------------------------------------
CUES = [Cue(0.0, 1.25, ("Hello there.",)), Cue(3661.5, 3662.0, ("Line one,", "line two."))]
TRANSCRIPT = Transcript(
    language="en", language_probability=0.98, duration=3662.0, model="tiny.en",
    segments=(Segment(0.0, 1.25, " Hello there.", (Word(0.0, 0.5, " Hello"),
                                                    Word(0.5, 1.25, " there."))),
              Segment(3661.5, 3662.0, "  Line one,  line two.  ", avg_logprob=float("-inf"))),
    suspect=("looks fine",))


def test_srt_format():
    assert render_srt(CUES) == ("1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n"
                                "2\n01:01:01,500 --> 01:01:02,000\nLine one,\nline two.\n\n")
    assert render_srt([]) == ""


def test_vtt_format_and_escaping():
    text = render_vtt(CUES + [Cue(3662.0, 3663.0, ("Tom & <Jerry>",))])
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n")
    assert "01:01:01.500 --> 01:01:02.000\nLine one,\nline two.\n" in text
    assert text.endswith("Tom &amp; &lt;Jerry&gt;\n\n")          # a blank line ends the last cue
    assert render_vtt([]) == "WEBVTT\n"


def test_srt_round_trip_through_parse_srt():
    cues = build_cues(make_words("First sentence here. Then a second, longer one that keeps "
                                 "going well past a single cue of two full lines, to be sure "
                                 "the round trip covers several cues.", step=0.37))
    assert len(cues) > 1
    assert parse_srt(render_srt(cues)) == cues


def test_srt_round_trip_is_exact_to_the_millisecond():
    cues = [Cue(ms / 1000, (ms + 1) / 1000, ("x",)) for ms in range(0, 400_000, 7)]
    assert parse_srt(render_srt(cues)) == cues


def test_parse_srt_tolerates_bom_crlf_and_missing_index():
    text = ("\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\nA\r\nB\r\n\r\n\r\n"
            "00:00:03.000 --> 00:00:04,000\r\nC\r\n")
    assert parse_srt(text) == [Cue(1.0, 2.5, ("A", "B")), Cue(3.0, 4.0, ("C",))]
    assert parse_srt("") == []
    with pytest.raises(ValueError, match="block 1"):
        parse_srt("1\nnot a timing line\ntext\n")


def test_txt_one_paragraph_per_segment():
    assert render_txt(TRANSCRIPT) == "Hello there.\nLine one, line two.\n"
    assert render_txt(Transcript("en", 1.0, 0.0, ())) == ""


def test_json_is_valid_and_complete():
    document = json.loads(render_json(TRANSCRIPT, CUES))
    assert {k: document[k] for k in ("language", "language_probability", "duration", "model",
                                      "suspect", "text")} == {
        "language": "en", "language_probability": 0.98, "duration": 3662.0, "model": "tiny.en",
        "suspect": ["looks fine"], "text": "Hello there. Line one,  line two."}
    assert document["segments"][0]["words"][1] == {
        "start": 0.5, "end": 1.25, "text": "there.", "probability": 1.0}
    assert document["segments"][1]["avg_logprob"] is None        # -inf is not JSON
    assert document["cues"][1] == {"start": 3661.5, "end": 3662.0,
                                   "lines": ["Line one,", "line two."]}
    non_ascii = Transcript("de", 1.0, 1.0, (Segment(0.0, 1.0, " Grüße"),))
    assert "Grüße" in render_json(non_ascii, [])                  # ensure_ascii=False


def test_real_jfk_cues_are_readable_and_faithful(real_speech):
    transcript = real_speech["jfk.flac"]
    words = transcript.words
    assert len(words) > 15
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert cues[0].start == pytest.approx(words[0].start, abs=0.001)
    assert cues[-1].end >= words[-1].end - 0.001
    assert parse_srt(render_srt(cues)) == cues
    assert check_transcript(transcript) == []
    assert word_error_rate(JFK_TEXT, transcript.text) < 0.10


def test_real_long_stream_is_readable(real_speech):
    """Three minutes of real word timings: multilingual.mp3's English reading (its first 31 s),
    six times over. Not the rest: tiny.en (an English model) invents a loop at 161 characters a
    second at the end, which no cue can show readably (the guard's business, test_guards)."""
    transcript = real_speech["multilingual.mp3"]
    speech = [w for w in transcript.words if w.end <= 31.0]
    words = [Word(w.start + k * 31.0, w.end + k * 31.0, w.text) for k in range(6) for w in speech]
    assert len(words) > 400 and words[-1].end > 180
    cues = build_cues(words)
    assert_well_formed(cues, words)
    assert len(cues) >= 30
    # The licence is punctuated throughout: most cues should end at punctuation. Not all: it
    # is read at ~20 characters a second, so reading speed forces some cuts mid-phrase (5 of
    # each reading's 8 cues end at punctuation). Only 16 of its 78 words end with one, so
    # cuts blind to punctuation would end about one cue in five there.
    at_punctuation = sum(c.text[-1] in ".,;:?!" for c in cues)
    assert at_punctuation >= 0.6 * len(cues), cue_texts(cues)


# -- timing to the speech (VAD regions) and between cues --------------------------------------
def test_cues_start_and_end_on_the_speech_whether_whisper_is_early_or_late():
    # Speech at 0.9-2.6 s and 4.0-6.3 s. Whisper puts the first sentence 0.1 s late and ends it
    # 0.08 s early; it puts the second 0.5 s early, in the silence before it.
    words = make_words("The meeting is over.", start=1.0) + make_words(
        "Please remember to send your notes.", start=3.5)
    speech = [SpeechRegion(900, 2600), SpeechRegion(4000, 6300)]
    assert build_cues(words, speech=speech) == [
        Cue(0.9, 2.6, ("The meeting is over.",)),
        Cue(4.0, 6.3, ("Please remember to send your notes.",))]
    # speech=None: Whisper's times alone, as before (what bench/timing.py calls "before").
    assert [c.start for c in build_cues(words)] == [1.0, 3.5]


def test_a_cue_cut_inside_a_stretch_of_speech_starts_on_its_word():
    words = make_words("The meeting is over. Please remember to send your notes to the whole "
                       "team before Friday afternoon.", start=0.2)
    cues = build_cues(words, speech=[SpeechRegion(100, 7000)])   # no pause anywhere
    assert cue_texts(cues)[0] == "The meeting is over."
    assert cues[0].start == 0.1                                    # the speech's onset
    assert cues[1].start == words[4].start                         # mid-speech: the word's time


def test_a_word_whisper_put_in_the_silence_after_it_goes_back_to_its_speech():
    # tiny.en, for real: "distribute." as a zero-length word 0.9 s after its speech ended; left
    # there, it opens the next sentence's cue.
    words = [Word(1.0, 1.3, " publish"), Word(2.4, 2.4, " distribute"),
             Word(2.9, 3.2, " permission"), Word(3.2, 3.6, " granted")]
    speech = [SpeechRegion(900, 1300), SpeechRegion(1450, 2000), SpeechRegion(2800, 3700)]
    assert cue_texts(build_cues(words)) == ["publish", "distribute permission granted"]
    cues = build_cues(words, speech=speech)
    assert cue_texts(cues) == ["publish distribute", "permission granted"]
    assert (cues[1].start, cues[1].end) == (2.8, 3.7)
    assert cues[0].end >= 2.0 - 0.1


def test_consecutive_cues_are_two_frames_apart_and_short_gaps_are_chained():
    def first_end(gap_seconds):
        # 49 and 53 characters: too many for one cue. The first sentence's words end at 3.92 s.
        words = make_words("The meeting is over and everyone may now go home.") + make_words(
            "Please remember to send your notes to the whole team.", start=3.92 + gap_seconds)
        cues = build_cues(words)
        assert len(cues) == 2 and check_readability(cues) == []
        return cues[0].end, cues[1].start

    # Touching: two frames apart (84 ms: 2 frames at 23.976, 24 and 25 fps), the second cue on
    # its word.
    end, start = first_end(0.0)
    assert (end, start) == (3.92 - MIN_GAP_MS / 1000, 3.92)
    # A gap under half a second (12 frames at 24 fps) is closed to exactly two frames.
    end, start = first_end(0.3)
    assert round((start - end) * 1000) == MIN_GAP_MS
    # Over half a second: left alone (the cue ends with its words, read in time).
    end, start = first_end(0.9)
    assert (end, start) == (3.92, 4.82)


def test_the_two_frame_gap_wins_over_the_speech_end_by_under_a_tenth():
    # The next stretch of speech starts 20 ms after this one ends: the first cue ends two frames
    # before the second starts, 64 ms before its speech's end (the bound is 100 ms).
    words = make_words("The meeting is over and everyone may now go home.") + make_words(
        "Please remember to send your notes to the whole team.", start=4.1)
    cues = build_cues(words, speech=[SpeechRegion(0, 4000), SpeechRegion(4020, 8000)])
    assert cues[1].start == 4.02
    assert round(cues[0].end * 1000) == 4020 - MIN_GAP_MS >= 4000 - 100


def test_the_readability_checker_wants_two_frames_between_cues():
    touching = [Cue(0.0, 1.0, ("One cue here.",)), Cue(1.05, 2.05, ("And the next.",))]
    assert check_readability(touching) == ["cue 2 (00:00:01,050): 50 ms after cue 1 "
                                           "(min 2 frames, 83 ms)"]
    apart = [touching[0], Cue(1.084, 2.084, ("And the next.",))]
    assert check_readability(apart) == []


def test_real_speech_cues_start_on_the_sentences(model_dir):
    """Three sentences of real speech after silences, onsets measured from the signal's energy
    (tests/harness/timed_speech.py), through the transcribe stage (VAD, pinned decode) and the
    cues the write stage makes."""
    from faster_whisper import WhisperModel

    from scribewatch.pipeline import stages
    from tests.harness.quality import cue_timing
    from tests.harness.timed_speech import timed_speech

    corpus = timed_speech(3, seed=2)
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    transcript = stages.transcribe(model, corpus.audio, stages.TranscribeOptions(
        language="en", temperature=0.0))
    assert transcript.speech is not None
    cues = stages.cues(transcript)
    assert check_readability(cues) == []
    errors = cue_timing(cues, [(s.onset, s.offset) for s in corpus.sentences])
    starts = [start for start, _ in errors]
    assert all(-0.2 <= start <= 0.15 for start in starts), errors
    assert sorted(abs(s) for s in starts)[1] <= 0.1, errors               # the median
    assert all(end >= -0.1 for _, end in errors), errors
    assert word_error_rate(corpus.text, transcript.text) < 0.1
