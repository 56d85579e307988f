"""The HTTP transcription API's side in the pipeline: its requests and answers (contract.py), the
queue the daemon's workers empty first (queue.py), and the answer bodies (render.py)."""
