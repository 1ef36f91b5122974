"""LeaseClock: when to renew, and until when a holder may dispatch."""

from __future__ import annotations

import pytest

from agentstream._leasing import LeaseClock


def test_a_holder_renews_every_quarter_and_dispatches_for_three_quarters() -> None:
    clock = LeaseClock(ttl=8.0)
    assert not clock.holds(0.0)
    assert not clock.renewal_due(0.0)  # nothing held: nothing to renew
    clock.granted(token=3, sent_at=100.0)
    assert clock.token == 3
    assert not clock.renewal_due(101.9)
    assert clock.renewal_due(102.0)
    assert clock.holds(105.9)
    assert not clock.holds(106.0)  # 3/4 of the TTL after the request left


def test_a_failed_renewal_is_retried_soon_and_the_deadline_does_not_move() -> None:
    clock = LeaseClock(ttl=8.0)
    clock.granted(token=1, sent_at=0.0)
    clock.renewal_failed(now=2.0)
    assert not clock.renewal_due(2.4)
    assert clock.renewal_due(2.5)
    assert clock.valid_until == 6.0
    clock.granted(token=1, sent_at=2.5)  # renewed
    assert clock.valid_until == 8.5


def test_a_lost_lease_stops_dispatching_at_once() -> None:
    clock = LeaseClock(ttl=8.0)
    clock.granted(token=1, sent_at=0.0)
    clock.lost()
    assert clock.token is None
    assert not clock.holds(0.1)
    assert not clock.renewal_due(10.0)


def test_polls_and_validation() -> None:
    assert LeaseClock(15).standby_poll == 0.5
    assert LeaseClock(1).standby_poll == 0.25
    with pytest.raises(ValueError, match="lease_ttl"):
        LeaseClock(0)
