"""Bad input never gets a 500: each answer is a 4xx with the JSON error shape, and the
server goes on serving. Bodies go out as raw bytes, since a JSON encoder would not
write most of them."""

from __future__ import annotations

import json

import pytest

from agentstream.server import ReferenceServer

from .server_fixtures import (
    Api,
    ServerFactory,
    error_of,
    parse_raw_answer,
    raw_exchange,
    raw_request,
)


@pytest.fixture
def srv(servers: ServerFactory) -> ReferenceServer:
    return servers.start()


@pytest.fixture
def api(servers: ServerFactory, srv: ReferenceServer) -> Api:
    return servers.api(srv)


def post(srv: ReferenceServer, path: str, body: bytes, *, chunked: bool = False) -> dict[str, str]:
    answer = raw_request(srv.port, "POST", path, body, key=srv.api_key, chunked=chunked)
    assert 400 <= answer.status < 500, answer
    error = answer.error()
    error["status"] = answer.status
    return error


def still_serves(api: Api) -> None:
    assert api.publish("task.shipped", {"ok": True})["data"] == {"ok": True}


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1.5e309"])
def test_a_number_that_overflows_is_400(srv: ReferenceServer, api: Api, number: bytes) -> None:
    error = post(srv, "/task-events", b'{"type": "task.shipped", "data": {"x": ' + number + b"}}")
    assert (error["status"], error["code"]) == (400, "invalid_json")
    error = post(srv, "/tasks", b'{"prompt": "p", "metadata": {"x": [' + number + b"]}}")
    assert (error["status"], error["code"]) == (400, "invalid_json")
    still_serves(api)


def test_large_finite_numbers_are_kept(api: Api) -> None:
    assert api.publish("task.shipped", {"x": 1.7e308, "y": 10**300})["data"]["x"] == 1.7e308


@pytest.mark.parametrize("field", ["taskId", "traceId", "organizationId"])
def test_a_lone_surrogate_in_a_text_field_is_400(
    srv: ReferenceServer, api: Api, field: str
) -> None:
    body = b'{"type": "task.shipped", "%s": "\\ud800"}' % field.encode()
    error = post(srv, "/task-events", body)
    assert (error["status"], error["code"]) == (400, "invalid_request")
    assert error["details"]["field"] == field
    error = post(srv, "/tasks", b'{"prompt": "a\\udfff"}')
    assert (error["status"], error["details"]["field"]) == (400, "prompt")
    still_serves(api)


def test_a_surrogate_pair_is_fine(api: Api) -> None:
    # "\ud83d\ude00" is one character (an emoji), not a lone surrogate
    response = api.request(
        "POST", "/task-events", data=b'{"type": "task.shipped", "traceId": "\\ud83d\\ude00"}'
    )
    assert response.status_code == 201, response.text
    assert response.json()["traceId"] == "\U0001f600"


def test_surrogates_in_the_path_and_query_are_404(api: Api) -> None:
    assert error_of(api.request("GET", "/tasks/%ED%A0%80"))["code"] == "task_not_found"
    response = api.stream_response(taskId="\udc80".encode("utf-8", "surrogatepass"))
    assert (response.status_code, error_of(response)["code"]) == (404, "task_not_found")


def nested(depth: int) -> bytes:
    return b'{"type": "task.shipped", "data": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [100, 500, 972, 973, 975, 978, 979, 1000, 100_000])
def test_deep_nesting_is_400(srv: ReferenceServer, api: Api, depth: int) -> None:
    # data adds a level under the body object: ``depth`` arrays are depth + 1 levels
    error = post(srv, "/task-events", nested(depth))
    assert (error["status"], error["code"]) == (400, "invalid_json")
    assert error["details"] == {"maxDepth": 100}
    still_serves(api)


def test_nesting_up_to_the_limit_is_accepted(srv: ReferenceServer) -> None:
    answer = raw_request(srv.port, "POST", "/task-events", nested(99), key=srv.api_key)
    assert answer.status == 201, answer
    assert json.loads(answer.body)["data"] == json.loads(b"[" * 99 + b"]" * 99)
    # brackets inside strings are not nesting
    body = b'{"type": "task.shipped", "data": "' + b"[" * 5000 + b'"}'
    assert raw_request(srv.port, "POST", "/task-events", body, key=srv.api_key).status == 201


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_a_chunked_body_is_read(srv: ReferenceServer) -> None:
    body = chunked(b'{"type": "task.', b'shipped", "data": {"n": 1}}')
    answer = raw_request(srv.port, "POST", "/task-events", body, key=srv.api_key, chunked=True)
    assert answer.status == 201, answer
    assert json.loads(answer.body)["data"] == {"n": 1}


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # not hex
        b"-2\r\n{}\r\n0\r\n\r\n",  # negative
        b"2\r\n{}XX0\r\n\r\n",  # no CRLF after the chunk data
        b"\r\n",  # an empty size line
    ],
)
def test_a_malformed_chunked_body_is_400(srv: ReferenceServer, api: Api, body: bytes) -> None:
    error = post(srv, "/task-events", body, chunked=True)
    assert (error["status"], error["code"]) == (400, "invalid_body")
    still_serves(api)


def test_a_body_shorter_than_its_content_length_is_400(srv: ReferenceServer, api: Api) -> None:
    head = (
        "POST /task-events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {srv.api_key}\r\nContent-Length: 100\r\n\r\n"
    )
    answer = parse_raw_answer(raw_exchange(srv.port, head.encode() + b'{"type": "task.shipped"}'))
    assert (answer.status, answer.error()["code"]) == (400, "invalid_body")
    still_serves(api)


@pytest.mark.parametrize(
    ("garbage", "status", "code"),
    [
        (b"GE\r\n\r\n", 400, "bad_request"),
        (b"\x00\x01 nonsense\r\n\r\n", 400, "bad_request"),
        (b'GET /tasks HTTP/1.x"\r\n\r\n', 400, "bad_request"),
        (b"\x00\x01\x02 nonsense at all\r\n\r\n", 400, "bad_request"),
        (b"GET /tasks\r\n\r\n", 400, "bad_request"),  # HTTP/0.9: not spoken
        (b"GET /tasks HTTP/9.9\r\n\r\n", 505, "http_version_not_supported"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "http_version_not_supported"),
    ],
)
def test_a_broken_request_line_gets_a_status_line(
    srv: ReferenceServer, api: Api, garbage: bytes, status: int, code: str
) -> None:
    answer = parse_raw_answer(raw_exchange(srv.port, garbage))
    assert answer.status == status, answer
    assert answer.status_line.startswith("HTTP/1.")
    assert answer.error()["code"] == code
    assert answer.headers["connection"] == "close"
    still_serves(api)


def test_an_empty_connection_gets_nothing(srv: ReferenceServer, api: Api) -> None:
    assert raw_exchange(srv.port, b"") == b""
    still_serves(api)


@pytest.mark.parametrize(
    "headers",
    [
        b"Host: x\r\nGarbage\r\nAuthorization: Bearer k\r\n",  # email ended the headers here
        b"Host: x\r\nX-A: 1\r\n  folded\r\n",  # an obsolete line folding
        b"Host: x\r\nX A: 1\r\n",  # a space in a header name
        b"Host: x\r\nX-A : 1\r\n",  # a space before the colon
        b"Host: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n",
        b"Host: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        b"Host: x\r\nTransfer-Encoding: gzip\r\n",
    ],
)
def test_malformed_headers_are_400(srv: ReferenceServer, api: Api, headers: bytes) -> None:
    answer = parse_raw_answer(
        raw_exchange(srv.port, b"GET /tasks/x HTTP/1.1\r\n" + headers + b"\r\n")
    )
    assert answer.status == 400, answer
    assert answer.error()["code"] == "bad_request"
    assert answer.headers["connection"] == "close"
    still_serves(api)


def test_bare_lf_line_ends_are_read(srv: ReferenceServer) -> None:
    request = f"GET /tasks/task_nope HTTP/1.1\nHost: x\nAuthorization: Bearer {srv.api_key}\n\n"
    answer = parse_raw_answer(raw_exchange(srv.port, request.encode()))
    assert (answer.status, answer.error()["code"]) == (404, "task_not_found")


def test_a_header_value_keeps_its_bytes_and_names_any_case(srv: ReferenceServer) -> None:
    # Headers are latin-1 text, as http.server made them: the key, sent lower-case.
    request = (
        f"GET /tasks/task_nope HTTP/1.1\r\nhost: x\r\nauthorization:   Bearer {srv.api_key}  \r\n"
        "Connection: close\r\n\r\n"
    )
    answer = parse_raw_answer(raw_exchange(srv.port, request.encode()))
    assert (answer.status, answer.error()["code"]) == (404, "task_not_found")


def test_expect_100_continue_gets_one_interim_answer(srv: ReferenceServer) -> None:
    body = b'{"type": "task.shipped"}'
    request = (
        f"POST /task-events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    data = raw_exchange(srv.port, request + body)
    assert data.count(b"100 Continue") == 1
    final = parse_raw_answer(data.split(b"\r\n\r\n", 1)[1])
    assert final.status == 201
