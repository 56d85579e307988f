"""End to end on loopback: real daemon -> real Prometheus -> real Alertmanager -> a receiver.

* the daemon: `scribewatch run` with the real model (conftest's `daemon_factory`);
* Prometheus: the project's prometheus/prometheus.yml and rules; the test overrides only the
  scrape target (the daemon's port), the Alertmanager address, the scrape/evaluation interval
  (1 s) and -- because a 30-minute failure window cannot be waited out in a test -- the rules'
  clock: it loads copies of prometheus/rules/*.yml in which every duration (`for:` and range
  selectors) is multiplied by TIME_SCALE (30m -> 2m, 5m -> 20s, see stack_config.scale_rules).
  Expressions, thresholds (> 25 %, >= 5 jobs), labels and annotations are the project's own;
* Alertmanager: the project's alertmanager/alertmanager.yml; the test overrides only the
  webhook URLs (-> the receiver below), group_wait/group_interval (1 s) and removes the email
  example (no SMTP traffic);
* a small webhook receiver: http.server in a thread (tests.harness.webhook.WebhookReceiver).

A working daemon (a few good files succeed) gets bad files: ScribewatchJobFailureRatioHigh
(> 25 % of at least 5 finished jobs) fires and reaches the receiver with the right labels. Good
files then bring the ratio down and the resolved notification follows -- while the failures are
still inside the (scaled) 30-minute window, so it is the successes that resolve it, not the
window running empty. Bounded in time; every process is stopped at teardown, also on failure.

Numbers: 3 good + 2 bad = 40 % of 5 jobs -> fires; 2 failures need >= 6 successes to get to
25 % -> ~4 more good files. (Bad files alone would need three good files per bad one to resolve:
too slow on a loaded 2-CPU CI box, where one job takes 2-8 s.)
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time

import pytest

from tests.harness import require_binary, wait_for
from tests.harness.stack import start_alertmanager, start_prometheus
from tests.harness.webhook import WebhookReceiver

pytestmark = pytest.mark.slow

# The rules' durations on a shorter clock (see module docstring). 1/15 keeps the failure
# window (2 min) long enough for the good jobs to land in it next to the bad ones even when a
# job takes 8 s; the alert's `for: 5m` becomes 20 s.
TIME_SCALE = 1 / 15
ALERT = "ScribewatchJobFailureRatioHigh"
WARMUP_GOOD = 3             # a daemon that works ...
BAD_FILES = 2               # ... then fails 2 of 5 (40 %, at the minimum count of 5)
GOOD_BATCH = 2              # good files dropped at a time until the alert resolves


def _firing(prom) -> list[dict]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == ALERT]


def _alerts_in(payload: dict, status: str) -> list[dict]:
    return [a for a in payload.get("alerts", [])
            if a["labels"].get("alertname") == ALERT and a["status"] == status]


# ~60 s on an idle 2-CPU box; the cap leaves room for a busy one. On timeout the test is
# interrupted in place, so the `finally`/`with` blocks still stop every process.
@pytest.mark.timeout(200)
def test_failure_ratio_alert_fires_and_resolves(tmp_path, daemon_factory, media):
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    started = time.monotonic()

    daemon = daemon_factory().start(timeout=120)
    instance = f"127.0.0.1:{daemon.port}"
    procs = {}
    try:
        with contextlib.ExitStack() as stack:   # exits in reverse: Prometheus stops first
            hook = stack.enter_context(WebhookReceiver())
            am = procs["alertmanager"] = stack.enter_context(
                start_alertmanager(tmp_path / "alertmanager", webhook_url=hook.url))
            prom = procs["prometheus"] = stack.enter_context(
                start_prometheus(tmp_path / "prometheus", targets=[instance],
                                 alertmanagers=[am.address], rule_time_scale=TIME_SCALE))

            # The project's job name and our daemon as its only target, scraped fine.
            targets = prom.wait_for_targets_up(30)
            assert [(t["labels"]["job"], t["labels"]["instance"]) for t in targets] == \
                [("scribewatch", instance)]
            # A few samples of the pre-initialised counters at 0 first: increase() only sees
            # failures that happen after the series' first sample.
            prom.wait_for('count_over_time(scribewatch_jobs_total{outcome="failed"}[1m]) >= 3', 30)
            assert prom.value(f'scribewatch_ready{{instance="{instance}"}}') == 1

            # -- a working daemon: good files (distinct names: the daemon deduplicates by path +
            # fingerprint only) --------------------------------------------------------------------
            dropped = 0         # good files so far
            bad = 0             # bad files so far

            def drop_good(count: int, until=lambda: False) -> None:
                """Copy `count` good files in; wait until they finished or `until()` holds."""
                nonlocal dropped
                for _ in range(count):
                    shutil.copy(media / "jfk.flac", daemon.watch / f"jfk-{dropped}.flac")
                    dropped += 1
                wait_for(lambda: until() or len([j for j in daemon.jobs() if j["status"] in
                                                  ("succeeded", "failed")]) >= bad + dropped,
                         90, 0.25, f"{bad + dropped} finished jobs")

            def phase(what: str) -> None:
                print(f"{time.monotonic() - started:5.1f}s {what}")

            phase("daemon, Prometheus and Alertmanager up")
            drop_good(WARMUP_GOOD)
            phase(f"{WARMUP_GOOD} good files done")
            assert not _firing(prom), "alert fired on a healthy daemon"

            # -- bad files: text renamed .mp4, empty .mp3 ---------------------------------------
            (daemon.watch / "notes.mp4").write_text("shopping list\n" * 20)
            (daemon.watch / "empty.mp3").write_bytes(b"")
            bad = BAD_FILES
            jobs = daemon.wait_jobs(dropped + bad, timeout=60)
            assert sorted((j["path"].rsplit("/", 1)[1], j["status"], j["reason"]) for j in jobs
                          if j["status"] != "succeeded") == \
                [("empty.mp3", "failed", "empty_file"), ("notes.mp4", "failed", "not_media")], jobs

            phase(f"{BAD_FILES} bad files failed")
            firing = hook.wait_for(lambda p: _alerts_in(p, "firing"), timeout=60,
                                   what=f"{ALERT} firing")
            phase("firing notification received")
            alert = _alerts_in(firing, "firing")[0]
            assert alert["labels"] == {"alertname": ALERT, "instance": instance,
                                       "job": "scribewatch", "severity": "warning"}
            assert firing["receiver"] == "webhook"          # the warning route
            assert firing["groupLabels"] == {"alertname": ALERT, "instance": instance}
            # a static summary (mixin convention); the values and the instance are in the
            # description
            assert alert["annotations"]["summary"] == \
                "A scribewatch daemon fails too many of its jobs.", alert["annotations"]
            assert re.match(rf"[0-9.]+% of the jobs scribewatch on {re.escape(instance)} finished",
                            alert["annotations"]["description"]), alert["annotations"]
            # "40% of the jobs ... failed (of 5 finished jobs; ...)": increase() extrapolates,
            # so both numbers are about, not exactly, 40 % and 5
            finished = re.search(r"\(of (\d+) finished jobs;", alert["annotations"]["description"])
            assert finished and int(finished.group(1)) >= 5, alert["annotations"]["description"]
            assert alert["annotations"]["runbook_url"].endswith(
                "mixin/runbook.md#scribewatchjobfailureratiohigh")
            assert not any(_alerts_in(p, "resolved") for _, p in hook.notifications)

            # -- good files until the alert resolves -------------------------------------------
            def is_resolved() -> bool:
                return any(_alerts_in(p, "resolved") for _, p in hook.notifications)

            deadline = time.monotonic() + 90
            while not is_resolved():
                assert time.monotonic() < deadline, \
                    f"no resolved notification after {dropped} good files: {hook.notifications}"
                drop_good(GOOD_BATCH, until=is_resolved)
                pause = time.monotonic() + 2    # one evaluation + notification round
                while not is_resolved() and time.monotonic() < pause:
                    time.sleep(0.25)
            phase("resolved notification received")

            resolved = hook.wait_for(lambda p: _alerts_in(p, "resolved"), timeout=1)
            alert = _alerts_in(resolved, "resolved")[0]
            assert alert["labels"] == {"alertname": ALERT, "instance": instance,
                                       "job": "scribewatch", "severity": "warning"}
            assert resolved["receiver"] == "webhook"
            # Resolved because jobs succeeded, not because the window merely emptied: the
            # failures are still in the ratio's window (ratio > 0), yet it is below threshold.
            ratio = prom.value(
                f'instance:scribewatch_job_failures:ratio_rate30m{{instance="{instance}"}}')
            assert ratio is not None and 0 < ratio <= 0.25, ratio

            # drop_good stops waiting once the alert resolves: let the last files finish.
            statuses = [j["status"] for j in daemon.wait_jobs(BAD_FILES + dropped, timeout=60)]
            assert statuses.count("failed") == BAD_FILES
            assert statuses.count("succeeded") == dropped
            phase(f"resolved after {dropped} good files in all")
    except BaseException:
        for name, proc in procs.items():
            print(f"----- {name} log (tail) -----\n{proc.log()[-5000:]}")
        print(f"----- daemon log (tail) -----\n{daemon.log()[-5000:]}")
        raise
    finally:
        exit_code = daemon.stop()
    assert exit_code == 0, daemon.log()[-5000:]
    for name, proc in procs.items():
        assert proc.proc.poll() is not None, f"{name} still running"
