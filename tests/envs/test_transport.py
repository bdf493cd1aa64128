"""SessionTransport: the one session-header protocol of BandwidthLimited and the multi-link runs."""

from __future__ import annotations

from bwgym.codecs.core.protocol import SESSION_BYTES, Session
from bwgym.envs.transport import SessionTransport


def _session(split: int = 0) -> Session:
    return Session("ndpca", b"\x01\x02\x03\x04", 2, split)


def test_header_goes_in_fragments_and_a_lost_one_is_sent_again():
    t, s = SessionTransport(), _session()
    sent = []
    for delivered in (True, False, True, True, True, True):
        rest, offset = t.outgoing(s)
        if not rest:
            break
        fragment = rest[:3]  # a 24-bit budget
        t.acknowledged(s, fragment, offset, delivered)
        if delivered:
            t.receive(fragment, offset)
        sent.append((offset, len(fragment), delivered))
    assert sent[1][0] == sent[2][0] == 3  # the lost fragment went again from the same offset
    assert t.tx_session == s and t.rx_session == s
    assert sum(n for _, n, ok in sent if ok) == SESSION_BYTES
    assert t.outgoing(s) == (b"", 0)  # held by the receiver: nothing more to send


def test_a_new_session_restarts_its_header_and_reset_forgets_both_ends():
    t, a, b = SessionTransport(), _session(0), _session(1)
    rest, offset = t.outgoing(a)
    t.acknowledged(a, rest[:4], offset, True)
    t.receive(rest[:4], offset)
    rest, offset = t.outgoing(b)  # the allocator switched to an explicit split mid-header
    assert offset == 0 and rest == b.to_bytes()
    t.acknowledged(b, rest, offset, True)
    t.receive(rest, offset)  # offset 0 starts a header at the receiver
    assert t.tx_session == b and t.rx_session == b
    t.reset()
    assert t.tx_session is None and t.rx_session is None and t.outgoing(b) == (b.to_bytes(), 0)


def test_no_session_sends_nothing():
    t = SessionTransport()
    assert t.outgoing(None) == (b"", 0)
    t.acknowledged(None, b"", 0, True)
    t.receive(b"", 0)
    assert t.rx_session is None
