"""`scribewatch` — the command line. The only module that knows both the pipeline and the exporter.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (the message names the key).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import __version__
from .pipeline import config as config_mod
from .pipeline import store as store_mod

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

log = logging.getLogger(__name__)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _load(args) -> config_mod.Config:
    path = getattr(args, "config", None) or os.environ.get("SCRIBEWATCH_CONFIG")
    if path is None and Path("scribewatch.yaml").is_file():
        path = "scribewatch.yaml"
    return config_mod.load(path, flags=config_mod.flags_from_args(args))


# -- run ---------------------------------------------------------------------------------------
# The workers run Python between native calls (tokenising, aligning words, laying out cues); a
# thread that needs the GIL meanwhile (the /metrics server) waits up to the switch interval each
# time it asks. 1 ms instead of Python's 5 keeps answers in single-digit milliseconds while a file
# is transcribed (docs/performance.md, "Scrape").
GIL_SWITCH_INTERVAL_SECONDS = 0.001


def _claim_store(cfg: config_mod.Config):
    """The store's filesystem check and the single-instance lock, before the store is opened
    (opening it re-queues 'running' jobs: those of a daemon already running on it)."""
    from .pipeline.instance_lock import InstanceLock, network_filesystem

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


SECOND_SIGNAL_HINT = "press Ctrl-C again to stop now; the running job is queued again"


def cmd_run(args) -> int:
    cfg = _load(args)
    _setup_logging(cfg.log_level)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    from .exporter import Exporter

    from .pipeline.daemon import Daemon
    from .pipeline.instance_lock import StoreInUse

    try:
        instance = _claim_store(cfg)
    except StoreInUse as e:
        log.error("%s", e)
        return EXIT_FAILURE
    daemon = Daemon(cfg)
    try:
        exporter = Exporter(daemon, listen=cfg.listen, tls_cert_file=cfg.tls_cert_file,
                            tls_key_file=cfg.tls_key_file, basic_auth_users=cfg.basic_auth_users)
    except ValueError as e:   # bad web settings (a plain password, unreadable TLS files)
        raise config_mod.ConfigError(str(e)) from None
    daemon.reporter = exporter.reporter
    daemon.gpu_probe = exporter.gpu_sampler.sample
    try:
        exporter.start()
    except OSError as e:
        log.error("cannot listen on %s: %s", cfg.listen, e)
        return EXIT_FAILURE
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        if stop.is_set():
            daemon.stop_now()   # a second Ctrl-C: give up on the grace period
        else:
            stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    log.info("scribewatch %s watching %s; metrics on %s", __version__,
             ", ".join(cfg.watch_dirs), exporter.url)
    stop.wait()
    daemon.stop(hint=SECOND_SIGNAL_HINT)
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
    from .pipeline.errors import SkipJob, StageError
    from .pipeline.runner import JobHooks, Runner, model_from_config, options_from_config

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
            for written in result.outputs:
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


# -- history -----------------------------------------------------------------------------------
def _store_for(args):
    from .pipeline.store import JobStore

    db = args.db or _load(args).db
    if not Path(db).exists():
        raise config_mod.ConfigError(f"invalid value {db!r} for 'db': no job store there")
    return JobStore(db)


def _fmt_seconds(v) -> str:
    return "-" if v is None else f"{v:.1f}s"


def cmd_history(args) -> int:
    store = _store_for(args)
    if args.stats:
        stats = store.stats()
        if args.json:
            print(json.dumps(stats, indent=2))
            return EXIT_OK
        c = stats["counts"]
        print(f"jobs: {stats['total_jobs']}  succeeded {c['succeeded']}  failed {c['failed']}  "
              f"skipped {c['skipped']}  queued {c['queued']}  running {c['running']}")
        for label, key in (("processing time", "processing_seconds"), ("detected → written", "job_seconds")):
            s = stats[key]
            print(f"{label}: avg {_fmt_seconds(s['avg'])}  p50 {_fmt_seconds(s['p50'])}  "
                  f"p95 {_fmt_seconds(s['p95'])}  max {_fmt_seconds(s['max'])}")
        rtf = stats["mean_realtime_factor"]
        print(f"audio: {stats['audio_hours']:.3f} h   mean real-time factor: "
              f"{'-' if rtf is None else f'{rtf:.3f}'}")
        for title, key in (("failures", "failure_reasons"), ("skips", "skip_reasons")):
            if stats[key]:
                print(f"{title}: " + ", ".join(f"{r} {n}" for r, n in sorted(stats[key].items())))
        return EXIT_OK
    if args.job is not None:
        job = store.get(args.job)
        if job is None:
            print(f"no job {args.job}", file=sys.stderr)
            return EXIT_FAILURE
        jobs = [job]
    else:
        jobs = store.history(limit=args.limit, status=args.status)
    if args.json:
        rows = [j.as_dict() for j in jobs]   # the store's columns, as before there was a type
        print(json.dumps(rows if args.job is None else rows[0], indent=2))
        return EXIT_OK
    if args.job is not None:
        for key, value in jobs[0].as_dict().items():
            print(f"{key:22} {value}")
        return EXIT_OK
    print(f"{'id':>5}  {'status':9}  {'reason':19}  {'tries':>5}  {'audio':>8}  {'lang':4}  path")
    for j in jobs:
        print(f"{j.id:>5}  {j.status:9}  {(j.reason or '-'):19}  {j.attempts:>5}  "
              f"{_fmt_seconds(j.audio_seconds):>8}  {(j.language or '-'):4}  {j.path}")
    return EXIT_OK


# -- retry -------------------------------------------------------------------------------------
def _stored_path(name: str) -> list[str]:
    """How the store may spell a file given on the command line: the daemon keeps paths under
    its resolved watch folders; a symlinked file itself keeps its own name."""
    given = Path(name).absolute()
    return list(dict.fromkeys([str(given.parent.resolve() / given.name), os.path.abspath(name)]))


def cmd_retry(args) -> int:
    """Failed jobs whose cause is fixed (a full disk, a permission), or any finished file again
    (`--path`, `--under`): a running daemon picks them up."""
    if not (args.job or args.reason or args.all_failed or args.path or args.under):
        raise config_mod.ConfigError("say which jobs: --job ID, --reason CODE, --all-failed "
                                     "(failed ones), --path FILE or --under DIR (any outcome)")
    if args.status and not args.under:
        raise config_mod.ConfigError("--status goes with --under DIR")
    store = _store_for(args)
    if args.job or args.reason or args.all_failed:
        ids = store.retry_failed(args.job or None, args.reason)
        print(f"{len(ids)} failed job(s) queued again" + (f": {', '.join(map(str, ids))}" if ids else ""))
    if not (args.path or args.under):
        return EXIT_OK
    paths = [p for name in args.path or () for p in _stored_path(name)]
    under = str(Path(args.under).resolve()) if args.under else None
    statuses = [args.status] if args.status else (("succeeded",) if under else store_mod.FINAL)
    queued, active = store.redo(paths, under=under, statuses=statuses)
    for job in queued:
        print(f"queued again: job {job.id} ({job.status} before) {job.path}")
    for job in active:
        print(f"already {job.status}: job {job.id} {job.path}", file=sys.stderr)
    known = {j.path for j in queued + active}
    missing = [name for name in args.path or () if not known & set(_stored_path(name))]
    for name in missing:
        print(f"no job for {name} in the store (the daemon has not seen it)", file=sys.stderr)
    print(f"{len(queued)} job(s) queued again")
    return EXIT_FAILURE if missing else EXIT_OK


# -- check -------------------------------------------------------------------------------------
def cmd_check(args) -> int:
    import yaml

    cfg = _load(args)
    _setup_logging("warning")
    print("# resolved configuration")
    print(yaml.safe_dump(cfg.as_dict(), sort_keys=False).rstrip())
    print("# checks")
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    for d in cfg.watch_dirs:
        report(os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK), f"watch folder {d} readable")
    if cfg.output_mode == "output_dir":
        report(os.path.isdir(cfg.output_dir) and os.access(cfg.output_dir, os.W_OK),
               f"output folder {cfg.output_dir} writable")
    db_dir = Path(cfg.db).resolve().parent
    report(db_dir.is_dir() and os.access(db_dir, os.W_OK), f"job store folder {db_dir} writable")
    from .pipeline.instance_lock import network_filesystem

    found = network_filesystem(db_dir)
    report(found is None or found[0] != "refuse", f"job store folder {db_dir} on a local "
           "filesystem" + (f" ({found[0]}: {found[1]})" if found else ""))
    from .pipeline.runner import model_from_config

    manager = model_from_config(cfg)
    try:
        manager.load()
        report(True, f"model {manager.name} loads on {manager.device}/{manager.compute_type} "
                     f"in {manager.load_seconds:.2f}s ({manager.source})")
    except Exception as e:
        report(False, f"model {manager.name}: {e}")
    from .exporter.gpu import Nvml

    gpus = Nvml().read()
    if gpus:
        for g in gpus:
            print(f"info gpu {g.index}: {g.name}, {(g.memory_total_bytes or 0) / 2**30:.1f} GiB")
    else:
        print("info no usable NVIDIA GPU (NVML unavailable): CPU inference")
    return EXIT_FAILURE if problems else EXIT_OK


# -- status ------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    from .exporter.status_cli import StatusError, fetch_status, format_status, url_for_listen

    url = args.url
    if url is None:
        cfg = _load(args)
        url = url_for_listen(cfg.listen, tls=bool(cfg.tls_cert_file))
    password = None
    if args.password_file:
        password = Path(args.password_file).read_text().strip()
    try:
        status = fetch_status(url, user=args.user, password=password, cafile=args.cafile,
                              insecure=args.insecure)
    except StatusError as e:
        print(f"scribewatch status: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


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
        config_mod.add_flags(p)
        return p

    p = with_config(sub.add_parser("run", help="run the daemon"))
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("transcribe", help="transcribe files once, with a progress bar"))
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("history", help="jobs from the store")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--db", metavar="PATH", help="job store (default: from the config)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "skipped"))
    p.add_argument("--stats", action="store_true", help="counts, durations, audio hours, real-time factor")
    p.add_argument("--job", type=int, metavar="ID", help="one job, every field")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("retry", help="queue failed jobs again once their cause is fixed, "
                                     "or redo finished files")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--db", metavar="PATH", help="job store (default: from the config)")
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
