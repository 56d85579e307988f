"""multipart/form-data (RFC 7578) read from a spooled request body, without copying it.

An upload can be gigabytes (raw PCM of a film from Bazarr, a whole media file from an OpenAI
client), so the body stays in its spool file: the parts are found through an mmap, a file part
is handed on as (offset, length) in that file, and only the small text fields are read.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import re

MAX_PART_HEAD = 16 * 1024
MAX_FIELD_BYTES = 64 * 1024     # a text field (model, language, prompt)

_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class FormError(ValueError):
    """A body that is not the form the endpoint takes."""


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    offset: int                 # in the spool file
    length: int


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """'form-data; name="a"; filename="b"' -> ('form-data', {'name': 'a', 'filename': 'b'})."""
    main, _, _ = value.partition(";")
    params = {}
    for key, raw in _PARAM.findall(value):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return main.strip().lower(), params


def boundary_of(content_type: str | None) -> bytes:
    kind, params = header_params(content_type or "")
    boundary = params.get("boundary", "")
    if kind != "multipart/form-data" or not 0 < len(boundary) <= 200:
        raise FormError("expected a multipart/form-data upload")
    return boundary.encode("latin-1")


def parse(path: str, content_type: str | None) -> dict[str, list[Part]]:
    """The parts of the form in the file at `path`, by field name (repeatable names keep
    their order: `timestamp_granularities[]`). Raises FormError."""
    delimiter = b"--" + boundary_of(content_type)
    size = os.path.getsize(path)
    if size == 0:
        raise FormError("the form is empty")
    parts: dict[str, list[Part]] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as body:
        pos = body.find(delimiter)
        if pos < 0:
            raise FormError("the form has no part")
        pos += len(delimiter)
        while body[pos:pos + 2] != b"--":
            if body[pos:pos + 2] != b"\r\n":
                raise FormError("a malformed part boundary")
            head_end = body.find(b"\r\n\r\n", pos + 2, pos + 2 + MAX_PART_HEAD)
            if head_end < 0:
                raise FormError("a part without a complete header")
            headers = {}
            for line in body[pos + 2:head_end].decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            start = head_end + 4
            end = body.find(b"\r\n" + delimiter, start)
            if end < 0:
                raise FormError("the form is cut short (no closing boundary)")
            _, params = header_params(headers.get("content-disposition", ""))
            name = params.get("name")
            if name is None:
                raise FormError("a part without a field name")
            parts.setdefault(name, []).append(Part(name, params.get("filename"),
                                                   headers.get("content-type"), start,
                                                   end - start))
            pos = end + 2 + len(delimiter)
    return parts


def text(path: str, part: Part) -> str:
    if part.length > MAX_FIELD_BYTES:
        raise FormError(f"field {part.name!r} is too long")
    with open(path, "rb") as f:
        f.seek(part.offset)
        return f.read(part.length).decode("utf-8", "replace")
