"""scribewatch pipeline: watch folders, keep a job store, run probe → decode → transcribe → write."""

__version__ = "0.1.0"
