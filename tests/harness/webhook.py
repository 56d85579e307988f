"""An Alertmanager webhook receiver for tests: an HTTP server on loopback, in a thread.

    with WebhookReceiver() as hook:            # hook.url goes into alertmanager_config
        payload = hook.wait_for(lambda p: p["status"] == "firing", timeout=60)
"""

from __future__ import annotations

import http.server
import json
import threading
import time


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 in a thread that records Alertmanager webhook payloads.

    `notifications` is the list of (path, payload) received so far; `wait_for(predicate)`
    returns the first payload the predicate accepts.
    """

    def __init__(self):
        self._lock = threading.Condition()
        self._received: list[tuple[str, dict]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"_raw": body.decode(errors="replace")}
                with receiver._lock:
                    receiver._received.append((self.path, payload))
                    receiver._lock.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):   # keep test output clean
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="webhook-receiver")
        self._thread.start()

    @property
    def notifications(self) -> list[tuple[str, dict]]:
        with self._lock:
            return list(self._received)

    def wait_for(self, predicate, timeout: float, what: str = "a matching notification") -> dict:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for _, payload in self._received:
                    if predicate(payload):
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; "
                                       f"received: {json.dumps(self._received)[:3000]}")
                self._lock.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
