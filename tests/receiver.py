"""A real HTTP server on loopback that receives webhooks: it answers with the status codes
a test scripts (then 200), and keeps what arrived (headers and body) for the test to read.

With ``hold_after=N`` the requests after the first N wait until ``release()``: a test can
stop the sender at a known point instead of racing it."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(
        self, codes: list[int] | None = None, delay_s: float = 0.0, hold_after: int | None = None
    ) -> None:
        self.codes: deque[int] = deque(codes or [])
        self.hold_after = hold_after
        self.admitted = 0
        self.released = threading.Event()
        self.always: int | None = None
        self.delay_s = delay_s
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0  # requests being answered at the same time, at most
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    admitted = receiver.admitted
                    receiver.admitted += 1
                if receiver.hold_after is not None and admitted >= receiver.hold_after:
                    receiver.released.wait()
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                if receiver.delay_s:
                    threading.Event().wait(receiver.delay_s)
                with receiver.lock:
                    code = receiver.codes.popleft() if receiver.codes else receiver.always or 200
                    receiver.received.append(
                        {
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body.decode(),
                            "code": code,
                            "path": self.path,
                        }
                    )
                    receiver.in_flight -= 1
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a sender that went away mid-answer (a killed server) is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def release(self) -> None:
        self.released.set()

    def __exit__(self, *_exc: Any) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
