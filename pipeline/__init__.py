"""scribewatch.pipeline: watch folders, keep a job store, run probe → decode → transcribe → write.

It never imports the exporter: what an observer needs is in `contract.py`."""
