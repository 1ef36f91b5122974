"""agentstream.sse against a tiny SSE endpoint: a dropped connection, resumed.

Run it with ``python examples/wire_resume.py``. It starts an SSE endpoint on
a free port of 127.0.0.1 (the standard library's ``http.server``), which
cuts the first connection in the middle of event 4. The stream reconnects,
sends ``Last-Event-ID: 3``, and receives events 4 to 8: nothing lost,
nothing twice.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agentstream.sse import (
    Connected,
    Disconnected,
    EventSource,
    Happening,
    Retrying,
    RetryPolicy,
)

TOTAL = 8
CUT_AFTER = 3  # the first connection dies half-way through event 4


class Endpoint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close-delimited body: no chunked framing at all
    connections = 0

    def do_GET(self) -> None:
        Endpoint.connections += 1
        first = int(self.headers.get("Last-Event-ID") or 0) + 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"retry: 200\n\n")  # reconnect after at most 200 ms
        for number in range(first, TOTAL + 1):
            event = f"id: {number}\nevent: step\ndata: step {number} of {TOTAL}\n\n".encode()
            if Endpoint.connections == 1 and number == CUT_AFTER + 1:
                self.wfile.write(event[:12])  # half an event, then the line goes dead
                return
            self.wfile.write(event)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the transcript readable


def show(happening: Happening) -> None:
    if isinstance(happening, Connected):
        resume = happening.last_event_id or "start"
        print(f"  [connected, resuming from {resume}]")
    elif isinstance(happening, Disconnected):
        print(f"  [disconnected: {happening.reason}]")
    elif isinstance(happening, Retrying):
        print(f"  [retrying in {happening.delay * 1000:.0f} ms]")


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    print(f"agentstream.sse reading {url} (the server cuts the first connection mid-event)")
    received: list[str] = []
    try:
        with EventSource(url, retry=RetryPolicy(initial_delay=0.2), on_happening=show) as source:
            for event in source:
                print(f"  event {event.id}: {event.data}")
                received.append(event.id or "")
                if len(received) == TOTAL:
                    break
    finally:
        server.shutdown()
        server.server_close()
    expected = [str(n) for n in range(1, TOTAL + 1)]
    ok = received == expected
    print(f"received {len(received)} events over {Endpoint.connections} connections: ", end="")
    print("none lost, none repeated" if ok else f"MISMATCH {received}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
