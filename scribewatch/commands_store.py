"""`scribewatch history` and `scribewatch retry`: the job store, read and re-queued."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .common import EXIT_FAILURE, EXIT_OK, load_config
from .pipeline import config as config_mod
from .pipeline import store as store_mod


# -- history -----------------------------------------------------------------------------------
def _open(url: str, what: str = "db"):
    """A store the user named: a SQLite file must exist already (a typo would create one)."""
    from .pipeline.store import StoreUnavailable, is_postgres_url, open_store, sqlite_path

    if not is_postgres_url(url) and not Path(sqlite_path(url)).exists():
        raise config_mod.ConfigError(f"invalid value {url!r} for '{what}': no job store there")
    try:
        return open_store(url)
    except StoreUnavailable as e:
        raise config_mod.ConfigError(f"invalid value for '{what}': {e}") from None


def _store_for(args):
    if args.db:
        return _open(args.db)
    cfg = load_config(args)
    return _open(cfg.store_url, "store_url") if cfg.store_url else _open(cfg.db)


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
        for label, key in (("processing time", "processing_seconds"),
                           ("detected → written", "job_seconds")):
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
    print(f"{'id':>5}  {'status':9}  {'reason':19}  {'tries':>5}  {'audio':>8}  {'lang':7}  "
          f"{'source':7}  {'prob':>4}  {'node':12}  path")
    for j in jobs:
        prob = "-" if j.language_probability is None else f"{j.language_probability:.2f}"
        print(f"{j.id:>5}  {j.status:9}  {(j.reason or '-'):19}  {j.attempts:>5}  "
              f"{_fmt_seconds(j.audio_seconds):>8}  {(j.language or '-'):7}  "
              f"{(j.language_source or '-'):7}  {prob:>4}  {(j.node or '-')[:12]:12}  {j.path}")
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
        print(f"{len(ids)} failed job(s) queued again"
              + (f": {', '.join(map(str, ids))}" if ids else ""))
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


# -- migrate -----------------------------------------------------------------------------------
def cmd_migrate(args) -> int:
    """Every job of one store into another, ids kept: the history moves with the library when
    one machine becomes several. The target must hold no jobs yet; the source is only read."""
    from .pipeline.store import describe

    source, target = _open(args.source, "--from"), _open(args.target, "--to")
    if not hasattr(target, "after_import"):
        raise config_mod.ConfigError("--to: migrate into a postgresql:// store")
    if sum(target.counts().values()):
        raise config_mod.ConfigError(f"--to {describe(args.target)}: the store holds jobs "
                                     "already; migrate into an empty one")
    moved, last = 0, 0
    while page := source.all_jobs(after_id=last, limit=1000):
        with target.batch():
            moved += sum(target.import_job(job) for job in page)
        last = page[-1].id
    target.after_import()
    print(f"{moved} job(s) copied from {describe(args.source)} to {describe(args.target)}")
    return EXIT_OK
