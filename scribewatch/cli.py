"""`scribewatch` — the command line: the parser, `run` (the composition root: the only place the
pipeline, the exporter and the web server are put together) and `transcribe`.
`history`/`retry` are in commands_store.py, `check`/`status` in commands_check.py.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (the message names the key).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .commands_check import cmd_check, cmd_status
from .commands_store import cmd_history, cmd_migrate, cmd_retry

# `_load` and `_setup_logging`: the names cmd_run and cmd_transcribe call them by.
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_flags
from .common import load_config as _load
from .common import setup_logging as _setup_logging
from .pipeline import config as config_mod
from .pipeline import store as store_mod
from .pipeline.store import sqlite_path

log = logging.getLogger(__name__)


# -- run ---------------------------------------------------------------------------------------
# The workers run Python between native calls (tokenising, aligning words, laying out cues); a
# thread that needs the GIL meanwhile (the /metrics server) waits up to the switch interval each
# time it asks. 1 ms instead of Python's 5 keeps answers in single-digit milliseconds while a file
# is transcribed (docs/performance.md, "Scrape").
GIL_SWITCH_INTERVAL_SECONDS = 0.001


def _claim_store(cfg: config_mod.Config):
    """The store's filesystem check and the single-instance lock, before the store is opened
    (opening it re-queues 'running' jobs: those of a daemon already running on it). A shared
    PostgreSQL store takes neither: several nodes use it at once, each under its own name."""
    from .pipeline.instance_lock import InstanceLock, network_filesystem
    from .pipeline.store import is_postgres_url

    if cfg.store_url and is_postgres_url(cfg.store_url):
        return _NoLock()
    if cfg.store_url:
        cfg = dataclasses.replace(cfg, db=sqlite_path(cfg.store_url))

    found = network_filesystem(cfg.db)
    if found is not None:
        level, why = found
        if level == "refuse":
            raise config_mod.ConfigError(
                f"invalid value {cfg.db!r} for 'db': {why}; SQLite's WAL mode is not safe "
                "there: keep the job store on a local disk (the watch folders may stay remote)")
        log.warning("job store %s: %s; SQLite's WAL mode is not safe on a remote filesystem",
                    cfg.db, why)
    return InstanceLock(cfg.db).acquire()


NOTIFY_GRACE_SECONDS = 5.0


class _NoLock:
    def release(self) -> None:
        pass


SECOND_SIGNAL_HINT = "press Ctrl-C again to stop now; the running job is queued again"


def cmd_run(args) -> int:
    cfg = _load(args)
    _setup_logging(cfg.log_level)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    # Handlers first: a SIGTERM during start-up (imports, the store, the exporter) is a clean
    # shutdown too, not a death by signal. The second signal needs the daemon, once it exists.
    stop, started = threading.Event(), []

    def on_signal(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        if stop.is_set() and started:
            started[0].stop_now()   # a second Ctrl-C: give up on the grace period
        else:
            stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from .exporter import Exporter, GpuSampler, PrometheusReporter
    from .pipeline.daemon import Daemon, NodeNameInUse
    from .pipeline.instance_lock import StoreInUse
    from .pipeline.notify import notifier_from_config
    from .pipeline.store import StoreUnavailable
    from .web import WebServer

    try:
        instance = _claim_store(cfg)
    except StoreInUse as e:
        log.error("%s", e)
        return EXIT_FAILURE
    # What the daemon reports to and samples the GPU with exist before it, so each part gets
    # its collaborators at construction and nothing is re-wired afterwards.
    reporter, gpu = PrometheusReporter(), GpuSampler()
    # Media-server refreshes and webhooks after each job: a thread of their own that empties the
    # job store's outbox (None: no target set)
    notifier = notifier_from_config(cfg, reporter)
    try:
        # The GPU plan reads free memory through the exporter's NVML session (GpuInventory).
        daemon = Daemon(cfg, reporter=reporter, gpu_probe=gpu.sample,
                        gpu_inventory=gpu.inventory, notifier=notifier)
    except StoreUnavailable as e:
        log.error("job store unreachable at start: %s", e)
        return EXIT_FAILURE
    except NodeNameInUse as e:
        log.error("%s", e)
        return EXIT_FAILURE
    exporter = Exporter(daemon, reporter=reporter, gpu_sampler=gpu)
    try:
        server = WebServer(exporter, daemon, listen=cfg.listen,
                           tls_cert_file=cfg.tls_cert_file, tls_key_file=cfg.tls_key_file,
                           basic_auth_users=cfg.basic_auth_users,
                           # the status page's RETRY goes to the daemon, which owns the store
                           job_control=daemon, grafana_url=cfg.grafana_url,
                           # the transcription API hands its requests to the daemon's workers
                           api_queue=daemon.api, api_tokens=cfg.api_tokens,
                           metrics_auth=cfg.metrics_auth,
                           api_max_upload_bytes=cfg.api_max_upload_bytes,
                           # Sonarr's and Radarr's webhooks: imports queued ahead of the folders
                           arr_hooks=daemon.arr)
    except ValueError as e:   # TLS files that do not load (config checked the rest)
        raise config_mod.ConfigError(str(e)) from None
    try:
        server.start()
    except OSError as e:
        log.error("cannot listen on %s: %s", cfg.listen, e)
        return EXIT_FAILURE
    exporter.start()
    daemon.start()      # starts the notifier after its recovery
    started.append(daemon)
    # What exists now lives as long as the process (modules, settings, the server, the model):
    # about 45,000 objects that each full collection walked again, holding the GIL some 10 ms
    # while every /metrics answer waited (docs/performance.md, "Scrape").
    gc.freeze()
    log.info("scribewatch %s (node %s, %s store) watching %s; metrics on %s", __version__,
             daemon.node, daemon.store_kind, ", ".join(daemon.libraries.roots), server.url)
    stop.wait()
    daemon.stop(hint=SECOND_SIGNAL_HINT)
    if notifier:
        notifier.stop(NOTIFY_GRACE_SECONDS)   # what the last jobs asked for, briefly
    server.stop()
    exporter.stop()
    daemon.store.close()
    instance.release()
    # A worker may still be inside CTranslate2 (its job is already back in the queue): normal
    # interpreter shutdown would tear Python down under that native call and crash (SIGSEGV).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OK)


# -- transcribe (one-shot) ---------------------------------------------------------------------
def _progress_bar(done: float, total: float, width: int = 30) -> str:
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    filled = int(frac * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:7.1f}/{total:.1f} s audio"


def cmd_transcribe(args) -> int:
    """Each file in turn, through the daemon's runner (its skip rules and hallucination guard);
    a file that fails or is skipped is one line on stderr and the next one is done."""
    cfg = _load(args)
    _setup_logging(cfg.log_level)
    from .pipeline.daemon.runner import JobHooks, Runner, model_from_config, options_from_config
    from .pipeline.errors import SkipJob, StageError

    output_dir = Path(cfg.output_dir) if cfg.output_mode == "output_dir" else None
    runner = Runner(cfg, model_from_config(cfg), options_from_config(cfg), output_dir)
    interactive = sys.stderr.isatty()
    failures = 0

    def failed(path: Path, message: str, stage: str, reason: str) -> None:
        nonlocal failures
        failures += 1
        # Stage messages start with the path, which already heads the line.
        message = message.removeprefix(f"{path}: ")
        print(f"failed {path}: {message} [{stage}/{reason}]", file=sys.stderr, flush=True)

    class Console(JobHooks):
        """A progress bar on a terminal, the finished line otherwise; the guard's re-run said."""

        def __init__(self, path: Path):
            self.path, self.total = path, 0.0

        def decoded(self, audio_seconds: float) -> None:
            self.total = audio_seconds

        def progressed(self, ratio: float, passes_before: int) -> None:
            end = "\r" if interactive and ratio < 1 else "\n"
            if interactive or ratio >= 1:
                print(f"{self.path.name}: {_progress_bar(ratio * self.total, self.total)}",
                      end=end, file=sys.stderr, flush=True)

        def rerun(self, findings: list[str]) -> None:
            print(f"suspect transcript of {self.path} ({'; '.join(findings)}): transcribing "
                  "again with safer settings", file=sys.stderr, flush=True)

    for name in args.files:
        path = Path(name).resolve()
        if not os.path.lexists(path):
            # Never there: a mistyped name, not a file that vanished during the job.
            failed(path, "no such file", "probe", "vanished")
            continue
        hooks = Console(path)
        try:
            # No intake ran: the rules it applies before reading a file are the runner's here.
            result = runner.run(path, path.parent, hooks, checked_before_reading=False)
            for written in result.outputs + result.translation:
                print(written, flush=True)
        except SkipJob as s:
            print(f"skipped {path}: {s.message.removeprefix(f'{path}: ')} [{s.reason}]",
                  file=sys.stderr, flush=True)
        except StageError as e:
            failed(path, e.message, e.stage, e.reason)
        except Exception as e:
            # A bug, not a bad file (those are StageErrors): loud, with its traceback as the
            # daemon logs it, and the other files still get done.
            log.exception("unexpected error in %s of %s", hooks.stage, path)
            failed(path, f"{type(e).__name__}: {e} (a bug: traceback above)", hooks.stage,
                   "internal_error")
    return EXIT_FAILURE if failures else EXIT_OK


# -- parser ------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):   # argparse exits 2 too; keep our wording consistent
        self.print_usage(sys.stderr)
        print(f"scribewatch: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scribewatch", description="Drop media in a folder, get subtitles.")
    parser.add_argument("--version", action="version",
                        version=f"scribewatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p):
        p.add_argument("--config", metavar="FILE",
                       help="YAML config file (default: $SCRIBEWATCH_CONFIG or ./scribewatch.yaml)")
        add_flags(p)
        return p

    p = with_config(sub.add_parser("run", help="run the daemon"))
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("transcribe", help="transcribe files once, with a progress bar"))
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("history", help="jobs from the store")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--db", "--store", dest="db", metavar="PATH|URL",
                   help="job store: a SQLite path or a store URL (default: from the config)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "skipped"))
    p.add_argument("--stats", action="store_true",
                   help="counts, durations, audio hours, real-time factor")
    p.add_argument("--job", type=int, metavar="ID", help="one job, every field")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("retry", help="queue failed jobs again once their cause is fixed, "
                                     "or redo finished files")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--db", "--store", dest="db", metavar="PATH|URL",
                   help="job store: a SQLite path or a store URL (default: from the config)")
    p.add_argument("--job", type=int, action="append", metavar="ID",
                   help="a failed job; repeatable")
    p.add_argument("--reason", metavar="CODE", help="every failed job with this reason code")
    p.add_argument("--all-failed", action="store_true")
    p.add_argument("--path", action="append", metavar="FILE",
                   help="redo this file, whatever its outcome (succeeded, failed, skipped); "
                        "repeatable")
    p.add_argument("--under", metavar="DIR",
                   help="redo every file below this folder whose outcome is --status")
    p.add_argument("--status", choices=store_mod.FINAL,
                   help="with --under: which outcome to redo (default: succeeded)")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("migrate", help="copy every job from one store to another "
                                       "(SQLite to a shared PostgreSQL)")
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="sqlite:///PATH (or a plain path)")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE (an empty store)")
    p.set_defaults(func=cmd_migrate)

    p = with_config(sub.add_parser("check", help="validate config, folders, model and GPU"))
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("status", help="what a running daemon is doing (/api/status)")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--url", help="daemon URL (default: from the config's listen address)")
    p.add_argument("--user")
    p.add_argument("--password-file", metavar="FILE")
    p.add_argument("--cafile", metavar="FILE", help="CA bundle for a self-signed TLS certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config_mod.ConfigError as e:
        print(f"scribewatch: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
