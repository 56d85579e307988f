"""A file's language: the codes (codes.py), the vote over its speech (vote.py), and the decision
that ends in the language its subtitles are written in (decision.py)."""
