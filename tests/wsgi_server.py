"""A WSGI app on werkzeug's threaded server, in a background thread on 127.0.0.1."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import make_server


class WSGIServer:
    """``start()`` serves ``app`` (one thread per request); ``stop()`` shuts it down."""

    def __init__(self, app: Any) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long shutdown() waits
            name="test-wsgi-server",
            daemon=True,
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> WSGIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> WSGIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
