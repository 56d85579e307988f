# syntax=docker/dockerfile:1
# scribewatch, CPU image.
#   docker build -t scribewatch:0.1.0 .                  (or: docker compose build)
#   docker build --build-arg UID=$(id -u) --build-arg GID=$(id -g) …   to own the media files
# The GPU variant is Dockerfile.cuda.

# --- build: a wheel of the project only (dependencies come from PyPI in the runtime stage) ----
FROM python:3.11.9-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scribewatch ./scribewatch
COPY pipeline ./pipeline
COPY exporter ./exporter
COPY web ./web
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------
FROM python:3.11.9-slim-bookworm

# The user the daemon runs as. Match it to the owner of your media folders (PUID/PGID in
# compose), because subtitles are written beside the media files.
ARG UID=1000
ARG GID=1000

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models/huggingface \
    SCRIBEWATCH_WATCH_DIRS=/media \
    SCRIBEWATCH_DB=/data/jobs.db \
    SCRIBEWATCH_LISTEN=0.0.0.0:9847 \
    SCRIBEWATCH_MODELS_DIR=/models \
    SCRIBEWATCH_DEVICE=cpu

RUN (getent group "${GID}" || groupadd --gid "${GID}" scribewatch) \
    && useradd --uid "${UID}" --gid "${GID}" --create-home --home-dir /home/scribewatch \
       --shell /usr/sbin/nologin scribewatch \
    && mkdir -p /data /models/huggingface /media \
    && chown -R "${UID}:${GID}" /data /models

COPY --from=build /wheels /wheels
# With the `postgres` extra (psycopg 3): a node can join a shared PostgreSQL job store.
RUN pip install "$(ls /wheels/*.whl)[postgres]" && rm -rf /wheels

# Job store (SQLite) and model cache: named volumes in compose.
VOLUME ["/data", "/models"]
WORKDIR /data
USER scribewatch
EXPOSE 9847

# /readyz: 200 when the model is usable, every watch folder is reachable and the store is
# writable; 503 otherwise. slim has no curl: use the interpreter we already have.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('SCRIBEWATCH_LISTEN', '0.0.0.0:9847').rpartition(':')[2]; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % port, timeout=4)"]

ENTRYPOINT ["scribewatch", "run"]
