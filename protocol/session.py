"""Sans-I/O sessions of the binary protocol: bytes in, messages out, and the reverse.

A transport (TCP, QUIC, or a test's in-memory pump) feeds received bytes to `receive_data` and
writes whatever `data_to_send` returns. Sessions never touch a socket or a clock, so both ends can
be tested as two in-memory peers: time comes in as ``now`` arguments (the server's handshake
deadline), and the transport arms a timer for `ServerSession.timer` and calls `handle_timer`.
Outgoing frames queue up until the transport asks for them, so
everything produced in one event-loop iteration leaves in one write (frame batching).
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec

from .frames import (
    DEFAULT_MAX_FRAME,
    HANDSHAKE_MAX_FRAME,
    MAX_REQUEST_ID,
    Frame,
    FrameError,
    FrameReader,
    FrameTooLarge,
    encode_frame,
)
from .messages import (
    NO_REPLY,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    DecodeError,
    Error,
    ErrorCode,
    Hello,
    MessageType,
    Welcome,
    decode_body,
    encode_body,
    type_of,
)

#: Seconds a server waits for a successful HELLO before it closes the connection (PROTOCOL.md,
#: "The handshake"): a client that never authenticates must not hold a connection and its buffers.
HANDSHAKE_TIMEOUT = 10.0


class ProtocolViolation(Exception):
    """The peer broke the protocol; the session is closed and should be torn down.

    ``code`` and ``message`` are what was (server side) or would be reported to the peer.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class _Session:
    """What both ends share: frame reassembly and the outgoing frame queue."""

    def __init__(self, max_frame: int) -> None:
        self.state = SessionState.HANDSHAKE
        self._reader = FrameReader(max_frame)
        self._out: list[bytes] = []

    @property
    def queued_frames(self) -> int:
        """Frames queued since the last `data_to_send` (not written yet)."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        """Every frame queued since the last call, as one buffer (empty when there is none)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def send(self, message_type: int, request_id: int, message: msgspec.Struct) -> None:
        """Queue one frame."""
        self._out.append(encode_frame(message_type, request_id, encode_body(message)))

    def send_encoded(self, message_type: int, request_id: int, body: bytes) -> None:
        """Queue one frame whose body is already msgpack (e.g. encoded once for many peers)."""
        self._out.append(encode_frame(message_type, request_id, body))

    def close(self) -> None:
        """The connection is gone: mark the session closed and free its buffers at once.

        Queued output and a partly received frame are dropped (nobody will send or read them), so
        a connection object that something still refers to holds no large buffer. Later
        `receive_data` calls return nothing; frames queued afterwards (answers to requests that
        were still in flight) go nowhere and are freed with the session.
        """
        self.state = SessionState.CLOSED
        self._reader.clear()
        self._out.clear()


@dataclass(slots=True)
class Request:
    """A decoded client request. ``request_id`` is 0 for frames that take no answer."""

    type: MessageType
    request_id: int
    message: Any


class ServerSession(_Session):
    """The server's end of one connection.

    The first frame must be `Hello` with a supported version and, when the server has a token, that
    token; the session answers it itself. `receive_data` returns the requests that follow. Anything
    malformed queues an `Error` frame, closes the session and raises `ProtocolViolation`: the
    transport flushes `data_to_send` and closes the connection.

    Until the handshake succeeded a frame may be at most ``handshake_max_frame`` bytes (checked on
    its header, before its body is buffered); after it, ``max_frame``. With ``now`` (the time the
    connection was accepted, on the transport's clock) and ``handshake_timeout``, the handshake
    must succeed by ``now + handshake_timeout``: the transport arms a timer for `timer` and calls
    `handle_timer`, which closes a session still waiting for its HELLO.
    """

    def __init__(
        self,
        welcome: Welcome,
        token: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        *,
        now: float | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        handshake_max_frame: int = HANDSHAKE_MAX_FRAME,
    ) -> None:
        super().__init__(min(max_frame, handshake_max_frame))
        self.welcome = welcome
        self.token = token
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        #: When the handshake must have succeeded (None: no deadline, when no ``now`` was given).
        self.handshake_deadline = None if now is None else now + handshake_timeout
        #: The client's Hello, once received.
        self.hello: Hello | None = None

    def timer(self) -> float | None:
        """When `handle_timer` must next be called (on the clock of ``now``); None: no timer."""
        return self.handshake_deadline if self.state is SessionState.HANDSHAKE else None

    def handle_timer(self, now: float) -> None:
        """The timer is due: past the handshake deadline without a HELLO, queue an `Error` frame
        (request id 0), close the session and raise `ProtocolViolation`; else do nothing (a timer
        that fired early is re-armed for `timer`)."""
        deadline = self.timer()
        if deadline is not None and now >= deadline:
            self._violate(
                0,
                ErrorCode.BAD_REQUEST,
                f"no successful HELLO within {self.handshake_timeout:g} s of connecting: "
                "a client must send HELLO first",
            )

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Request]:
        """Feed received bytes; returns the complete requests in them, in order."""
        if self.state is SessionState.CLOSED:
            return []
        frames = self._read(data)
        if self.state is SessionState.HANDSHAKE and frames:
            # Only the HELLO is read under the handshake limit; once it succeeded the frames
            # pipelined behind it are read under the full one.
            hello = frames[0]
            self._handshake(*self._decode(hello))
            self._reader.max_frame = self.max_frame
            frames = self._read(b"")
        requests: list[Request] = []
        for frame in frames:  # (`_decode` inlined: this is the per-request hot path)
            try:
                mtype = MessageType(frame.type)
            except ValueError:
                self._violate(frame.request_id, ErrorCode.BAD_REQUEST, f"unknown message type {frame.type}")
            if mtype >= MessageType.WELCOME:
                self._violate(frame.request_id, ErrorCode.BAD_REQUEST, f"{mtype.name} is a server message")
            try:
                message = decode_body(mtype, frame.body)
            except DecodeError as exc:
                self._violate(frame.request_id, ErrorCode.BAD_REQUEST, exc)
            if mtype is MessageType.HELLO:
                self._violate(frame.request_id, ErrorCode.BAD_REQUEST, "HELLO may only be sent once")
            requests.append(Request(mtype, frame.request_id, message))
        return requests

    def _read(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """The frames ``data`` completes (only the first one during the handshake)."""
        handshake = self.state is SessionState.HANDSHAKE
        try:
            return self._reader.feed(data, 1 if handshake else None)
        except FrameTooLarge as exc:
            if handshake:
                why = (
                    f"a frame of {exc.length} bytes before a successful HELLO: at most {exc.max_frame} "
                    "are accepted until the client has authenticated"
                )
                self._violate(0, ErrorCode.TOO_LARGE, why)
            self._violate(0, ErrorCode.TOO_LARGE, exc)
        except FrameError as exc:
            self._violate(0, ErrorCode.BAD_REQUEST, exc)

    def _decode(self, frame: Frame) -> tuple[MessageType, int, Any]:
        try:
            mtype = MessageType(frame.type)
        except ValueError:
            self._violate(frame.request_id, ErrorCode.BAD_REQUEST, f"unknown message type {frame.type}")
        if mtype >= MessageType.WELCOME:
            self._violate(frame.request_id, ErrorCode.BAD_REQUEST, f"{mtype.name} is a server message")
        try:
            message = decode_body(mtype, frame.body)
        except DecodeError as exc:
            self._violate(frame.request_id, ErrorCode.BAD_REQUEST, exc)
        return mtype, frame.request_id, message

    def _handshake(self, mtype: MessageType, request_id: int, message: Any) -> None:
        if mtype is not MessageType.HELLO:
            self._violate(request_id, ErrorCode.BAD_REQUEST, "the first frame must be HELLO")
        if message.version not in SUPPORTED_VERSIONS:
            supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
            self._violate(
                request_id,
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {message.version} is not supported (this server speaks {supported}); "
                "upgrade the client or the server",
            )
        if self.token is not None and not _token_matches(message.token, self.token):
            why = "no auth token was given" if message.token is None else "the auth token is wrong"
            self._violate(
                request_id,
                ErrorCode.UNAUTHORIZED,
                f"{why}: pass the server's token (auth_token=... or SPITFIRE_AUTH_TOKEN)",
            )
        self.hello = message
        self.state = SessionState.OPEN
        self.send(MessageType.WELCOME, request_id, self.welcome)

    def _violate(self, request_id: int, code: ErrorCode, reason: object) -> NoReturn:
        self.error(request_id, code, str(reason))
        self.state = SessionState.CLOSED
        self._reader.clear()  # the stream cannot go on: nothing buffered will ever be read
        raise ProtocolViolation(code, str(reason))

    def reply(self, request: Request, message: msgspec.Struct, message_type: int | None = None) -> None:
        """Queue the answer to ``request`` (nothing for requests that take no answer)."""
        if request.request_id or request.type not in NO_REPLY:
            self.send(type_of(message) if message_type is None else message_type, request.request_id, message)

    def error(
        self,
        request_id: int,
        code: ErrorCode,
        message: str,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Queue an `Error` frame (request id 0: about the connection, not one request)."""
        self.send(MessageType.ERROR, request_id, Error(code.value, message, field, retry_after))

    def push(self, message_type: int, message: msgspec.Struct) -> None:
        """Queue an unsolicited frame (request id 0): DELIVER, CANCEL_JOBS, GOAWAY."""
        self.send(message_type, 0, message)


def _token_matches(given: str | None, expected: str) -> bool:
    """Whether the client's token is the server's, in time that does not depend on where they differ
    (a timing side channel would let a client guess the token byte by byte)."""
    if given is None:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


@dataclass(slots=True)
class Response:
    """A server frame: the answer to ``request_id``, or a push when ``request_id`` is 0."""

    type: MessageType
    request_id: int
    message: Any


class ClientSession(_Session):
    """The client's end of one connection: queues `Hello` at once, numbers requests, decodes answers.

    `receive_data` returns every frame as a `Response`; the caller matches ``request_id`` to its
    pending requests (0 means a push). The `Welcome`, once received, is in ``welcome``; an `Error`
    answering the Hello raises `ProtocolViolation` (wrong token, unsupported version).
    """

    def __init__(
        self,
        client: str = "",
        token: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        version: int = PROTOCOL_VERSION,
    ) -> None:
        super().__init__(max_frame)
        self.welcome: Welcome | None = None
        self._next_id = 1
        self._hello_id = self.request(MessageType.HELLO, Hello(version, client, token))

    def request(self, message_type: int, message: msgspec.Struct) -> int:
        """Queue a request; returns its request id (0 for types that take no answer)."""
        if message_type in NO_REPLY:
            self.send(message_type, 0, message)
            return 0
        request_id = self._next_id
        self._next_id = 1 if request_id >= MAX_REQUEST_ID else request_id + 1
        self.send(message_type, request_id, message)
        return request_id

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Response]:
        """Feed received bytes; returns the complete server frames in them, in order."""
        if self.state is SessionState.CLOSED:
            return []
        try:
            frames = self._reader.feed(data)
        except FrameError as exc:
            self.state = SessionState.CLOSED
            raise ProtocolViolation(ErrorCode.BAD_REQUEST, str(exc)) from None
        out: list[Response] = []
        for frame in frames:
            try:
                mtype = MessageType(frame.type)
                message = decode_body(mtype, frame.body)
            except (ValueError, DecodeError) as exc:
                self.state = SessionState.CLOSED
                raise ProtocolViolation(ErrorCode.BAD_REQUEST, f"bad frame from the server: {exc}") from None
            if self.state is SessionState.HANDSHAKE and frame.request_id == self._hello_id:
                if mtype is MessageType.ERROR:
                    self.state = SessionState.CLOSED
                    # Not `str in ErrorCode`: that warns (an error under -W error) on Python 3.11.
                    try:
                        code = ErrorCode(message.code)
                    except ValueError:
                        code = ErrorCode.INTERNAL
                    raise ProtocolViolation(code, message.message)
                if mtype is not MessageType.WELCOME:
                    self.state = SessionState.CLOSED
                    why = f"the server answered HELLO with {mtype.name}"
                    raise ProtocolViolation(ErrorCode.BAD_REQUEST, why)
                self.welcome = message
                self.state = SessionState.OPEN
                continue
            out.append(Response(mtype, frame.request_id, message))
        return out
