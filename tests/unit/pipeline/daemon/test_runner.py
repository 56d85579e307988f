"""The runner: one file through probe → decode → transcribe → write with the real tiny.en model,
the skip policy asked on the way, and the guard's re-run."""

import shutil

import pytest

from scribewatch.pipeline import config
from scribewatch.pipeline.daemon.runner import (
    JobHooks,
    Runner,
    model_from_config,
    options_from_config,
)
from scribewatch.pipeline.errors import SkipJob
from tests.harness.quality import distrust_the_first_transcript


class Recording(JobHooks):
    def __init__(self):
        self.stages, self.ratios, self.reruns = [], [], []

    def timed(self, stage, fn, *args):
        self.stages.append(stage)
        return super().timed(stage, fn, *args)

    def progressed(self, ratio, passes_before):
        self.ratios.append((passes_before, ratio))

    def rerun(self, findings):
        self.reruns.append(findings)


def test_a_file_goes_through_the_four_stages_in_order(runner, media, tmp_path):
    source = shutil.copy(media / "jfk.flac", tmp_path / "jfk.flac")
    hooks = Recording()
    result = runner.run(tmp_path / "jfk.flac", tmp_path, hooks)
    assert hooks.stages == ["probe", "decode", "transcribe", "write"]
    assert result.outputs == [str(tmp_path / "jfk.en.srt")] and source
    assert "country" in (tmp_path / "jfk.en.srt").read_text()
    assert hooks.ratios[-1] == (0, 1.0) and not hooks.reruns and not result.findings


def test_one_shot_asks_the_before_reading_rules_itself(runner, media, tmp_path):
    shutil.copy(media / "jfk.flac", tmp_path / "jfk.flac")
    (tmp_path / "jfk.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nmine\n")
    hooks = Recording()
    with pytest.raises(SkipJob) as skip:
        runner.run(tmp_path / "jfk.flac", tmp_path, hooks, checked_before_reading=False)
    assert skip.value.reason == "subtitle_exists" and hooks.stages == []   # never read
    # The daemon's intake asked already: the runner does not ask again.
    runner.run(tmp_path / "jfk.flac", tmp_path, hooks)
    assert "country" in (tmp_path / "jfk.en.srt").read_text()


def test_a_suspect_result_is_transcribed_again_with_safer_settings(runner, media, tmp_path,
                                                                    monkeypatch):
    distrust_the_first_transcript(monkeypatch)
    shutil.copy(media / "jfk.flac", tmp_path / "jfk.flac")
    hooks = Recording()
    result = runner.run(tmp_path / "jfk.flac", tmp_path, hooks)
    assert (hooks.reruns == [["repetition loop (test)"]]
            and result.findings == ("repetition loop (test)",))
    assert result.transcript.suspect == ("first run: repetition loop (test)",)
    assert (1, 1.0) in hooks.ratios   # the re-run reports its own progress


def test_max_cps_reaches_the_written_cues(model_dir, media, tmp_path):
    """`max_cps` from the config is the reading speed of the written file: the licence read in
    English (multilingual.mp3's first 30.5 s, dense speech) has more cues over 12 characters
    per second at the default 20 than at `max_cps: 12` (real tiny.en). Speech this dense cannot
    reach 12 everywhere: a cue is lengthened only into silence, never over the next one."""
    from tests.harness import media as gen
    from tests.harness.quality import check_readability, parse_srt

    speech = gen.load_speech(media / "multilingual.mp3", 30.5)

    def cues_at(max_cps: float | None, sub: str):
        folder = tmp_path / sub
        gen.write_wav(folder / "licence.wav", speech)
        flags = {"watch_dirs": [str(folder)], "model": model_dir, "cpu_threads": 2,
                 "temperature": 0}
        if max_cps is not None:
            flags["max_cps"] = max_cps
        cfg = config.load(None, environ={}, flags=flags)
        Runner(cfg, model_from_config(cfg), options_from_config(cfg), None).run(
            folder / "licence.wav", folder, JobHooks())
        return parse_srt((folder / "licence.en.srt").read_text())

    default, slow = cues_at(None, "default"), cues_at(12, "slow")
    # Cues start where the VAD hears speech resume and stay two frames apart: on speech this
    # dense that may leave a cue a few tens of ms short of its reading time (the least bad cut
    # wins), never more than 1 character per second over.
    over = [float(p.split(": ")[1].split()[0]) for p in check_readability(default)
            if "characters per second" in p]
    assert len(over) == len(check_readability(default)) and all(cps < 21 for cps in over)
    assert check_readability(default, max_cps=12), "the licence at 20 cps has cues over 12"
    fast = [p for p in check_readability(default, max_cps=12) if "characters per second" in p]
    slower = [p for p in check_readability(slow, max_cps=12) if "characters per second" in p]
    assert len(slower) < len(fast), (slower, fast)


def test_the_outputs_are_announced_before_they_are_renamed_into_place(runner, media, tmp_path):
    """What the daemon records as the job's own (claimed_job.Running.writing): a death between
    the rename and the job's end re-runs the job, which then replaces them instead of skipping
    the file for a subtitle that is its own (and so ends succeeded, which refreshes the media
    servers: the notification is not lost)."""
    shutil.copy(media / "jfk.flac", tmp_path / "jfk.flac")
    announced = []

    class Announcing(JobHooks):
        def writing(self, outputs):
            announced.append([(o, (tmp_path / o).exists()) for o in outputs])

    result = runner.run(tmp_path / "jfk.flac", tmp_path, Announcing())
    assert announced == [[(str(tmp_path / "jfk.en.srt"), False)]], "before the rename"
    assert result.outputs == [str(tmp_path / "jfk.en.srt")]
