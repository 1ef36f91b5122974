"""Client configuration and plain API calls, against real servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from agentstream import Client
from agentstream.errors import ConfigurationError

KEY = "as_test_0123456789abcdef"


# -- the API key --------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_key", "what"),
    [
        (KEY + "\r\n", "CR"),  # a .env file with CRLF endings
        (KEY + "\n", "LF"),
        (KEY[:5] + "\r\n" + KEY[5:], "CR"),
        (KEY + "\x00", "control"),
        (KEY + "\x7f", "control"),
        (KEY + "\u2019", "non-ASCII"),
        (" " + KEY, "white space"),
        (KEY + " ", "white space"),
    ],
)
def test_a_key_that_no_header_can_carry_fails_at_construction_without_repeating_it(
    bad_key: str, what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=what) as raised:
        Client("http://127.0.0.1:9", api_key=bad_key)
    assert KEY[:5] not in str(raised.value)
    assert KEY[5:] not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None
    if "\x00" in bad_key:
        return  # no environment variable can hold a NUL
    # The same from the environment.
    monkeypatch.setenv("AGENTSTREAM_API_KEY", bad_key)
    with pytest.raises(ConfigurationError, match="AGENTSTREAM_API_KEY") as raised:
        Client("http://127.0.0.1:9")
    assert KEY[5:] not in str(raised.value)


def test_a_key_of_printable_ascii_is_accepted() -> None:
    key = "as_" + "".join(chr(c) for c in range(0x20, 0x7F))
    assert "hidden" in repr(Client("http://127.0.0.1:9", api_key=key))
