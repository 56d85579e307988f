"""The one fixture of the web tests: real servers on free loopback ports."""

from __future__ import annotations

import pytest

from tests.harness.status import start_web_server, stop_web_server, web_server


@pytest.fixture
def serve():
    """`serve(source=None, **kw)`: a started WebServer (with its exporter's sampler) on
    127.0.0.1:<free port>, `kw` as WebServer takes them; all stopped at teardown."""
    started = []

    def start(source=None, **kw):
        server = start_web_server(web_server(source, **kw))
        started.append(server)
        return server

    yield start
    for server in started:
        stop_web_server(server)
