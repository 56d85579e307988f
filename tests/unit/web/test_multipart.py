"""multipart/form-data as the real clients write it (urllib3's encoder, which python-requests
uses for Bazarr's `files=`), read from a spool file without copying the upload."""

from __future__ import annotations

import pytest
from urllib3.filepost import encode_multipart_formdata

from scribewatch.web import multipart


def spooled(tmp_path, fields) -> tuple[str, str]:
    body, content_type = encode_multipart_formdata(fields)
    path = tmp_path / "body"
    path.write_bytes(body)
    return str(path), content_type


def test_a_requests_style_form_gives_each_part_in_place(tmp_path):
    audio = bytes(range(256)) * 1000 + b"\r\n--not-the-boundary\r\n"
    path, content_type = spooled(tmp_path, [
        ("audio_file", ("audio_file", audio)), ("model", "whisper-1"),
        ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment")])
    parts = multipart.parse(path, content_type)
    part = parts["audio_file"][0]
    assert part.filename == "audio_file" and part.length == len(audio)
    with open(path, "rb") as f:
        f.seek(part.offset)
        assert f.read(part.length) == audio
    assert multipart.text(path, parts["model"][0]) == "whisper-1"
    assert [multipart.text(path, p) for p in parts["timestamp_granularities[]"]] == \
        ["word", "segment"]


def test_quoted_boundaries_and_parameters(tmp_path):
    body = (b'--a;b\r\nContent-Disposition: form-data; name="file"; filename="x \\"y\\".mp3"\r\n'
            b"Content-Type: audio/mpeg\r\n\r\nDATA\r\n--a;b--\r\n")
    path = tmp_path / "body"
    path.write_bytes(body)
    part = multipart.parse(str(path), 'multipart/form-data; boundary="a;b"')["file"][0]
    assert (part.filename, part.content_type, part.length) == ('x "y".mp3', "audio/mpeg", 4)


@pytest.mark.parametrize("body, content_type, message", [
    (b"", "multipart/form-data; boundary=b", "empty"),
    (b"no boundary at all", "multipart/form-data; boundary=b", "no part"),
    (b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\ncut short',
     "multipart/form-data; boundary=b", "cut short"),
    (b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b",
     "field name"),
    (b"x", "application/x-www-form-urlencoded", "multipart/form-data"),
    (b"x", None, "multipart/form-data"),
])
def test_broken_forms_are_named(tmp_path, body, content_type, message):
    path = tmp_path / "body"
    path.write_bytes(body)
    with pytest.raises(multipart.FormError, match=message):
        multipart.parse(str(path), content_type)
