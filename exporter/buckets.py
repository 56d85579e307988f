"""The histograms' bucket ladders (used by the catalog, `catalog.py`)."""

# Buckets, chosen for this workload (upper bounds, seconds unless noted):
# * stages run from a few milliseconds (probing a file's header, writing an .srt) to an hour
#   (transcribing a feature film on a CPU), so the ladder starts at 5 ms and is roughly
#   1-2.5-5 per decade up to 1 h: enough resolution at both ends for p50/p95/p99.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                 600, 1200, 1800, 3600)
# * a whole job (detected → written) and the wait in the queue go from sub-second (a short clip
#   on an idle GPU) to hours (a film on a CPU behind a backlog of films); 8 h is the top bound.
LONG_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
# * the real-time factor (processing seconds per audio second) is ~0.01-0.05 for large models on
#   a GPU, ~0.05-0.3 for small models on a CPU, and above 1 (slower than real time) for large
#   models on a CPU; 1 is a bucket edge so "faster than real time" is exact.
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
# * a media-server refresh or webhook on a LAN answers in milliseconds; a slow one up to the
#   client's 10 s timeout (pipeline/notify/http.py), which is the last bucket edge.
NOTIFY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# * a language decision's probability: forced, tagged and English-only decisions are 1; a vote
#   on one language is above 0.9; a mixed file splits near 0.5; 0.6 is the default threshold
#   (`language_min_confidence`), so it is an edge.
CONFIDENCE_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1)
