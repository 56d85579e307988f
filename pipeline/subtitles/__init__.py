"""Subtitles: cues from word timestamps and their renderers (cues.py), where a line breaks
(linebreaks.py), the output formats (formats.py), and where and how files are written
(output.py)."""
