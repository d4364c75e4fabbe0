"""A JSON HTTP server on loopback for the EHR-side tests: JWK Sets and FHIR searches."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]
"""(path with query, request headers) -> (status, response headers, body)."""


def json_route(document: object, status: int = 200) -> Route:
    """A route answering `document` as JSON (read at each request: tests may change it)."""

    def answer(_path: str, _headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps(document() if callable(document) else document).encode()
        return status, {"Content-Type": "application/json"}, body

    return answer


class LoopbackServer:
    """Answers GETs from `routes` (exact path match, query included, else path alone); keeps
    every request it received as (path, headers)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.path, headers))
                route = server.routes.get(self.path) or server.routes.get(self.path.split("?")[0])
                if route is None:
                    status, extra, body = 404, {"Content-Type": "application/json"}, b"{}"
                else:
                    status, extra, body = route(self.path, headers)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                if "Content-Length" not in extra:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen.split("?")[0] == path)

    @contextlib.contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join()
