"""The browser tests' guard: without chromium a user's run skips with the reason; CI fails."""

from __future__ import annotations

import shutil

import pytest

import tests.harness
from tests.harness import browser


def test_missing_chromium_skips_with_the_package_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(tests.harness, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install chromium"):
        browser.require_chromium()


def test_missing_chromium_fails_under_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(tests.harness, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true and chromium not installed"):
        browser.require_chromium()


def test_png_size(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (390).to_bytes(4, "big")
                    + (844).to_bytes(4, "big") + b"\x08\x06\x00\x00\x00")
    assert browser.png_size(png) == (390, 844)
