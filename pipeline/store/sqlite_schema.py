"""The job store's schema: the tables as the first release created them, the migrations that
bring any store to the current version, and the per-status counts kept by triggers. `sqlite.py`
applies them; `job.py` is the typed row.
"""

from __future__ import annotations

SCHEMA_VERSION = 8

# A queued job's priority (`jobs.priority`): a claim takes the highest first, then the oldest.
# The folder backlog is FOLDER; a file Sonarr or Radarr just imported (pipeline/arr/) is IMPORT,
# so it runs next. API requests never wait in this queue (their own claim goes first).
FOLDER_PRIORITY = 0
IMPORT_PRIORITY = 10

# A job that died twice in a row at the same point is suspect: it waits behind the other queued
# jobs, so a poison file does not hold up the folder while it is tried again, and a run of
# kills from outside lands on different jobs instead of piling strikes onto one.
SUSPECT_STRIKES = 2

# The order a claim takes queued jobs in (both engines, and the status page's list): suspects
# last, then imports before the folder backlog, then the oldest first.
CLAIM_ORDER = f"(strikes >= {SUSPECT_STRIKES}), priority DESC, id"

# Version 1, as the first release created it. A new store is created like this too and then
# migrated, so every store reaches the current version by the same path.
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id                    INTEGER PRIMARY KEY,
    path                  TEXT NOT NULL,
    root                  TEXT NOT NULL,      -- the watch folder it came from (mount health)
    size                  INTEGER,
    mtime_ns              INTEGER,
    fingerprint           TEXT,
    status                TEXT NOT NULL,      -- queued running succeeded failed skipped
    attempts              INTEGER NOT NULL DEFAULT 0,
    not_before            REAL NOT NULL DEFAULT 0,   -- retry backoff
    worker                TEXT,
    detected_at           REAL NOT NULL,
    started_at            REAL,
    finished_at           REAL,
    current_stage         TEXT,
    stage_seconds         TEXT NOT NULL DEFAULT '{}',
    audio_seconds         REAL,
    language              TEXT,
    language_probability  REAL,
    model                 TEXT,
    device                TEXT,
    compute_type          TEXT,
    outputs               TEXT NOT NULL DEFAULT '[]',
    error_stage           TEXT,
    reason                TEXT,
    error_message         TEXT,
    suspect               TEXT,               -- JSON list of hallucination-guard findings
    cpu_avg_ratio         REAL,
    cpu_max_ratio         REAL,
    rss_max_bytes         INTEGER,
    gpu_util_max_ratio    REAL,
    gpu_memory_max_bytes  INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, not_before, id);
CREATE INDEX IF NOT EXISTS jobs_path ON jobs(path, id);
-- the last success, read at scrape time
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(status, finished_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

# Version 6, one self-contained step (the PostgreSQL store adds the same as its version 3): API
# requests are jobs (`source` 'api', the `endpoint`, the `answer_key` of their answer, the
# request's parameters and its spooled audio as JSON, and `answered_by`: the job whose answer a
# request got when it ran no transcription itself), and their answers are kept by content.
API_JOB_COLUMNS = (
    "source TEXT NOT NULL DEFAULT 'folder'",
    "endpoint TEXT",
    "answer_key TEXT",
    "api_request TEXT",
    "answered_by INTEGER",
)
API_TABLES = (
    # The in-flight meeting point: one active job per answer key, on any node.
    "CREATE UNIQUE INDEX jobs_active_answer ON jobs(answer_key) "
    "WHERE status IN ('queued', 'running') AND answer_key IS NOT NULL",
    "CREATE INDEX jobs_api_queue ON jobs(source, status, id)",
    """CREATE TABLE api_answers (
        answer_key    TEXT PRIMARY KEY,
        body          BLOB NOT NULL,
        content_type  TEXT NOT NULL,
        language      TEXT NOT NULL,
        audio_seconds REAL NOT NULL,
        bytes         INTEGER NOT NULL,
        job_id        INTEGER,
        created_at    REAL NOT NULL,
        used_at       REAL NOT NULL)""",
    "CREATE INDEX api_answers_used ON api_answers(used_at)",
    "CREATE INDEX api_answers_created ON api_answers(created_at)",
)

# schema_version -> the statements that bring a store from the version before it to that one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Crash accounting: a death of the daemon during a job counts against the file only when it
    # happens at the same point again, with no progress in between (see recover_after_crash).
    2: (
        # checkpoint: progress within current_stage (seconds of audio transcribed), so that a
        # death can be placed; crashes: deaths during the job; strikes: of them, how many in a
        # row at one point; crash_point: where the last one was ('transcribe@60'); crash_seq:
        # which death of the daemon that was (meta 'deaths'), to tell "in a row".
        "ALTER TABLE jobs ADD COLUMN checkpoint REAL NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN strikes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN crash_point TEXT",
        "ALTER TABLE jobs ADD COLUMN crash_seq INTEGER",
        # claim_next puts suspects last; strikes in the index keeps the claim a covering search.
        "DROP INDEX IF EXISTS jobs_queue",
        "CREATE INDEX jobs_queue ON jobs(status, not_before, strikes, id)",
    ),
    # Where the job's language came from (language/decision.py): forced, tag, (hint,) model, vote or
    # default; `language` and `language_probability` are version 1's columns.
    3: (
        "ALTER TABLE jobs ADD COLUMN language_source TEXT",
    ),
    # When each stage ran ({stage: [start, end]}, unix times): a prefetched file's probe and
    # decode run before its job is claimed, while the previous job is transcribed.
    4: ("ALTER TABLE jobs ADD COLUMN stage_spans TEXT NOT NULL DEFAULT '{}'",),
    # Libraries and leases (the PostgreSQL store has the same columns): a file is keyed by
    # (library, rel_path), so nodes mounting one NAS at different paths share its job; a claim
    # is a lease (node, token, expiry) that a heartbeat renews and a result must still hold.
    5: (
        "ALTER TABLE jobs ADD COLUMN library TEXT",
        "ALTER TABLE jobs ADD COLUMN rel_path TEXT",
        "ALTER TABLE jobs ADD COLUMN node TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_token TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_expires_at REAL",
        "ALTER TABLE jobs ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0",
        # Before libraries the watch root was the key's first half; below it, the path.
        "UPDATE jobs SET library = root, rel_path = CASE WHEN substr(path, 1, length(root) + 1) "
        "= root || '/' THEN substr(path, length(root) + 2) ELSE path END",
        "CREATE INDEX jobs_key ON jobs(library, rel_path, id)",
        # The oldest queued job, read at each status refresh.
        "CREATE INDEX jobs_queued_since ON jobs(status, detected_at)",
    ),
    # API requests as jobs, their answers kept by content (pipeline/store/api_jobs.py).
    6: (
        *(f"ALTER TABLE jobs ADD COLUMN {column}" for column in API_JOB_COLUMNS),
        *API_TABLES,
    ),
    # Sonarr/Radarr imports first (pipeline/arr/), one self-contained step: `priority` orders
    # the claim (highest first, then the oldest; suspects still last), and `language_hint` is
    # what the import said of the file's language (JSON: {"language", "note"}), the decision
    # chain's `hint` step.
    7: (
        "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN language_hint TEXT",
    ),
}

# The notification outbox (store/outbox.py; PostgreSQL's version 5 is the same table): a
# finished job's refreshes and webhooks, written in the transaction that finishes the job and
# claimed by a sender like jobs are (a token and an expiry). One self-contained step: the
# versions before it (6, 7) come from other changes, and the migration loop takes the steps
# present in order.
OUTBOX_MIGRATION = (
    "CREATE TABLE notifications ("
    " id INTEGER PRIMARY KEY,"
    " job_id INTEGER NOT NULL,"
    " target TEXT NOT NULL,"          # jellyfin, emby, plex, webhook:<hash of its URL>
    " item TEXT NOT NULL,"            # a video's path, a folder, a webhook body
    " status TEXT NOT NULL,"          # pending sent failed
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " due_at REAL NOT NULL,"          # batch window, retry backoff
    " created_at REAL NOT NULL,"
    " finished_at REAL,"
    " claim_node TEXT, claim_token TEXT, claim_expires_at REAL,"
    " last_error TEXT)",
    # the senders' claims and waits, over pending rows only
    "CREATE INDEX notifications_due ON notifications(target, due_at) WHERE status = 'pending'",
    # the purge of delivered and given-up rows
    "CREATE INDEX notifications_done ON notifications(finished_at) WHERE status <> 'pending'",
)
MIGRATIONS[8] = OUTBOX_MIGRATION

# Jobs per status, kept by triggers: the daemon reads them at every status refresh (scrapes,
# /readyz), and counting 100,000 rows each time took ~20 ms. Triggers also count what another
# process changes (`scribewatch retry`), which an in-memory counter would miss.
COUNTS = (
    "CREATE TABLE job_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN "
    "INSERT INTO job_counts VALUES (NEW.status, 1) "
    "ON CONFLICT(status) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs "
    "WHEN OLD.status IS NOT NEW.status BEGIN "
    "UPDATE job_counts SET n = n - 1 WHERE status = OLD.status; "
    "INSERT INTO job_counts VALUES (NEW.status, 1) "
    "ON CONFLICT(status) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN "
    "UPDATE job_counts SET n = n - 1 WHERE status = OLD.status; END",
    # A store from before the counts (or a new one): count once, in the same transaction.
    "INSERT INTO job_counts SELECT status, COUNT(*) FROM jobs GROUP BY status",
)
