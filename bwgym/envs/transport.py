"""The link transport of a session header: one class for every link that carries lean frames.

A codec that sends lean frames (:mod:`bwgym.codecs.core.protocol`) first sends its 88-bit session header
over each link, charged to that link's bits: with a frame when both fit, else alone, fragmented
over as many steps as the budget needs. A fragment that is lost is sent again (a link layer's
acknowledgements tell the sender), and the header is sent anew when the session changes (an
allocator switching between the codec's own split and an explicit one). The receiver parses frames
only under the session it has received whole.

:class:`~bwgym.envs.bandwidth.BandwidthLimited` (one link per env) and the two-receiver run
(:mod:`bwgym.scenarios.two_receivers`, a broadcast link and two private ones) both use it::

    transport = SessionTransport()
    rest, offset = transport.outgoing(session)          # header bytes still to send, from offset
    fragment = rest[: budget_bits // 8]                 # as much as the step carries
    ...                                                 # link.transmit((fragment, offset, frame), ...)
    transport.acknowledged(session, fragment, offset, delivered)
    transport.receive(fragment, offset)                 # at the receiver, per delivered item
    transport.rx_session                                # what the receiver parses frames under
"""

from __future__ import annotations

from bwgym.codecs.core.protocol import SESSION_BYTES, Session

__all__ = ["SessionTransport"]


class SessionTransport:
    """Both ends of one link's session header: what the sender still has to send, what arrived.

    Attributes:
        tx_session: the session the sender knows the receiver holds (None: none yet).
        rx_session: the session the receiver holds (None: frames cannot be parsed yet).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start an episode: nothing sent, nothing received."""
        self.tx_session: Session | None = None
        self.rx_session: Session | None = None
        self._pending: Session | None = None  # the header being sent
        self._acked = 0  # its bytes the receiver acknowledged
        self._rx_bytes = b""

    def outgoing(self, session: Session | None) -> tuple[bytes, int]:
        """The header bytes of ``session`` still to send and their offset (``b""``: none to send)."""
        if session is None or session == self.tx_session:
            return b"", 0
        if session != self._pending:  # a new header starts from its first byte
            self._pending, self._acked = session, 0
        return session.to_bytes()[self._acked :], self._acked

    def acknowledged(self, session: Session | None, fragment: bytes, offset: int, delivered: bool) -> None:
        """Record the link's acknowledgement of a transmission that carried ``fragment`` at ``offset``."""
        if not fragment or not delivered or session is None:
            return
        self._acked = offset + len(fragment)
        if self._acked == len(session.to_bytes()):
            self.tx_session, self._acked = session, 0

    def receive(self, fragment: bytes, offset: int) -> None:
        """The receiver's side: append a delivered fragment; a whole header becomes its session.

        Fragments arrive in order and a lost one is sent again, so offset 0 starts a header.
        """
        if not fragment:
            return
        self._rx_bytes = (self._rx_bytes if offset else b"") + fragment
        if len(self._rx_bytes) == SESSION_BYTES:
            self.rx_session, self._rx_bytes = Session.from_bytes(self._rx_bytes), b""
