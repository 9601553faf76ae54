"""The RESP2 listener (``spitfire-server --redis HOST:PORT``): Redis clients' list and stream commands
over Spitfire's queues. docs/compat.md says what each command does and where it differs from Redis.

Each command parses its arguments, calls one operation of `Consumers` (or reads a count), and renders
the answer; validation, limits, backpressure, the order jobs are taken in and leases are the
engine's, as for every other surface. Engine errors become RESP errors: ``-ERR <field>: <message>``
for a bad argument, ``-<CODE> <message>`` with the protocol's codes (BUSY, NO_SPACE, TOO_LARGE,
CONFLICT, NOT_FOUND, INTERNAL) otherwise.

One connection: its bytes go through `RequestReader` (hiredis behind a shape guard) into an inbox,
and one task serves the inbox in order, one command at a time: pipelined commands are answered in
order, and a blocking pop holds up the commands behind it, as in Redis. (Consecutive pushes are the
exception: they run together and share their fdatasync, answered in order; the next other command
waits for them.) Bounds: at most
``max_connections`` open connections (one more is told ``-ERR max number of clients reached`` and
closed); a request within `Limits` (a broken framing or limit: ``-ERR Protocol error: ...``, then
closed); a request half sent for ``request_timeout`` seconds closes the connection, so a slow or
stalled client cannot hold a buffer for long; reading pauses while `MAX_INBOX` commands or
`MAX_INBOX_BYTES` wait, and serving pauses while the client does not read its answers (the
transport's write buffer is full). With an auth token, a connection must AUTH within
``handshake_timeout`` seconds, and nothing but AUTH, HELLO and QUIT works before. A blocking pop's
wait ends, taking nothing, when its client closes (its EOF) or goes away, and with a nil answer when
the server shuts down.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec

from spitfire.index.job import Job
from spitfire.protocol.jsonvalue import msgpack_to_json
from spitfire.server.consumers import MAX_TAKE, Consumers
from spitfire.server.errors import EngineError, ValidationError

from .resp_wire import (
    EMPTY_ARRAY,
    NIL_ARRAY,
    Limits,
    Raw,
    Reply,
    RequestReader,
    RespError,
    Status,
    encode,
    error,
)

log = logging.getLogger("spitfire.compat.resp")

#: Parsed commands that may wait to be served before the connection stops reading.
MAX_INBOX = 1024
#: Bytes of parsed commands that may wait to be served before the connection stops reading.
MAX_INBOX_BYTES = 8 * 2**20
#: Elements of one command: two per XADD field, one per LPUSH value (the engine takes at most
#: 10,000 jobs per push), and the command's own words.
MAX_ARGS = 20_016
#: Bytes of one command in all (the binary protocol's frame limit).
MAX_REQUEST = 64 * 2**20
#: Consecutive pipelined pushes (LPUSH, RPUSH, XADD) served concurrently: each appends its record
#: in order at once and they wait for their commits together (one fdatasync for the lot, not one
#: each); any other command waits for them first, so it sees their jobs.
MAX_PUSHES_IN_FLIGHT = 256
_PUSHES = frozenset({b"LPUSH", b"RPUSH", b"XADD"})
#: Lease holder of popped jobs, between their reservation and their (immediate) ack.
POP_HOLDER = "redis:pop"
#: Lease holders of stream consumers are ``redis:<group>/<consumer>``.
HOLDER_PREFIX = "redis:"
#: What HELLO says of the server.
SERVER_VERSION = b"0.1.0"
#: Commands a connection may send before it has authenticated (when the server has a token).
BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})
#: Commands a cluster member that does not lead still serves (the rest answer ``-NOTLEADER``).
ANY_MEMBER = frozenset({b"AUTH", b"HELLO", b"QUIT", b"PING", b"COMMAND"})

_ids = itertools.count(1)
_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.encode
_msgpack_encode = msgspec.msgpack.encode
_msgpack_decode = msgspec.msgpack.decode
_JSON_CONTAINER = re.compile(rb"[ \t\r\n]*[\[{]")
_INTEGER = re.compile(rb"-?[0-9]{1,18}")
_PONG = Status("PONG")
_OK = Status("OK")
#: What turning a stored payload back into text can raise (values nested too deep, non-JSON types).
_RENDER_ERRORS = (
    RecursionError,
    msgspec.DecodeError,
    msgspec.EncodeError,
    TypeError,
    ValueError,
    OverflowError,
)


class CommandError(Exception):
    """A command's arguments are wrong: ``reply`` is the RESP error to answer."""

    def __init__(self, reply: RespError) -> None:
        super().__init__(str(reply))
        self.reply = reply


def wrong_arity(args: list[bytes]) -> CommandError:
    """Redis's error for a command given too few or too many arguments."""
    return CommandError(error("ERR", f"wrong number of arguments for '{_show(args[0]).lower()}' command"))


def syntax_error() -> CommandError:
    return CommandError(error("ERR", "syntax error"))


def _show(arg: bytes, most: int = 64) -> str:
    """An argument as text for an error message, cut to ``most`` characters."""
    text = arg[: most * 4].decode("utf-8", "replace")
    return text if len(text) <= most else text[:most] + "..."


def text_of(arg: bytes, what: str) -> str:
    """An argument that must be UTF-8 text (a key, a group, a consumer)."""
    try:
        return arg.decode()
    except UnicodeDecodeError:
        raise CommandError(error("ERR", f"{what}: must be UTF-8 text")) from None


def int_of(arg: bytes, *, least: int = 0) -> int:
    """A whole number of at least ``least`` (Redis's messages for anything else)."""
    if not _INTEGER.fullmatch(arg):  # (int() would also take " 1", "1_000" and 4,000 digits)
        raise CommandError(error("ERR", "value is not an integer or out of range"))
    value = int(arg)
    if value < least:
        raise CommandError(error("ERR", "value is out of range, must be positive"))
    return value


def timeout_of(arg: bytes) -> float:
    """A blocking pop's timeout in seconds; 0 is forever (``math.inf``)."""
    try:
        seconds = float(arg)
    except ValueError:
        raise CommandError(error("ERR", "timeout is not a float or out of range")) from None
    if not math.isfinite(seconds):
        raise CommandError(error("ERR", "timeout is not a float or out of range"))
    if seconds < 0:
        raise CommandError(error("ERR", "timeout is negative"))
    return math.inf if seconds == 0 else seconds


def holder_of(group: bytes, consumer: bytes) -> str:
    """The lease holder of a stream consumer: ``redis:<group>/<consumer>``."""
    g = text_of(group, "group")
    if not g or "/" in g:
        raise CommandError(error("ERR", "group: must be a non-empty name without '/'"))
    return f"{HOLDER_PREFIX}{g}/{text_of(consumer, 'consumer')}"


# -- payloads -----------------------------------------------------------------------------------------


def job_of(queue: str, value: bytes) -> tuple[str, bytes]:
    """A pushed value as a job's (name, msgpack payload).

    A JSON object or array is stored as that JSON value (a Spitfire worker gets an object's members
    as its arguments); an object's string ``name`` member is taken out and names the job's handler
    instead of the queue's name. Any other value is stored as a string (bytes if not UTF-8).
    """
    name = queue
    obj: Any
    if _JSON_CONTAINER.match(value):
        try:
            obj = _json_decode(value)
        except (msgspec.DecodeError, RecursionError):
            obj = _text_or_bytes(value)
        else:
            if isinstance(obj, dict) and isinstance(obj.get("name"), str):
                name = obj.pop("name")
    else:
        obj = _text_or_bytes(value)
    return name, _to_msgpack(obj)


def entry_of(queue: str, fields: list[bytes]) -> tuple[str, bytes]:
    """XADD's field-value pairs as a job's (name, msgpack payload): a JSON object of strings (a
    field given twice keeps its last value), the ``name`` field naming the handler if given."""
    obj: dict[str, str] = {}
    for i in range(0, len(fields), 2):
        obj[text_of(fields[i], "field")] = text_of(fields[i + 1], "value")
    name = obj.pop("name", queue)
    return name, _to_msgpack(obj)


def _text_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


def _to_msgpack(obj: Any) -> bytes:
    try:
        return _msgpack_encode(obj)
    except (msgspec.EncodeError, OverflowError, TypeError, ValueError, RecursionError) as exc:
        raise CommandError(error("ERR", f"value: cannot be stored as msgpack: {exc}")) from None


def _decoded(job: Job) -> tuple[bool, Any]:
    """(True, the payload's value), or (False, None) when it does not decode cleanly."""
    try:
        return True, _msgpack_decode(job.payload)
    except _RENDER_ERRORS:
        return False, None


def value_of(job: Job) -> bytes:
    """A job's payload as a popped value: a string as it is, bytes as they are, anything else as
    compact JSON (a map gets ``name`` back when the handler is not named after the queue)."""
    ok, value = _decoded(job)
    if not ok:
        return msgpack_to_json(job.payload)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict) and job.name != job.queue and "name" not in value:
        value = {"name": job.name, **value}
    try:
        return _json_encode(value)
    except _RENDER_ERRORS:
        return msgpack_to_json(job.payload)


def _field_text(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    try:
        return _json_encode(value)
    except _RENDER_ERRORS:
        try:
            return msgpack_to_json(_msgpack_encode(value))
        except _RENDER_ERRORS:
            return b"null"


def fields_of(job: Job) -> list[Reply]:
    """A job as a stream entry's field-value list: a map payload's members (strings as they are,
    other values as JSON), with ``name`` first when the handler is not named after the queue;
    any other payload as the one field ``payload``."""
    ok, value = _decoded(job)
    out: list[Reply] = []
    if job.name != job.queue and not (ok and isinstance(value, dict) and "name" in value):
        out += [b"name", job.name]
    if ok and isinstance(value, dict):
        for key, item in value.items():
            out += [key if isinstance(key, str | bytes) else _field_text(key), _field_text(item)]
    else:
        out += [b"payload", value_of(job)]
    return out


def entry(job: Job) -> list[Reply]:
    return [job.id, fields_of(job)]


def engine_error(exc: EngineError) -> RespError:
    """An engine refusal as a RESP error: ERR for a bad argument, the protocol's code otherwise."""
    if type(exc) is ValidationError:
        return error("ERR", str(exc))
    return error(exc.kind.value, str(exc))


# -- commands -----------------------------------------------------------------------------------------

Handler = Callable[["RespConnection", list[bytes]], Awaitable[Reply]]


class Commands:
    """Every command the listener knows, served over one `Consumers`."""

    def __init__(
        self, consumers: Consumers | None, token: str | None, not_leader: Callable[[], str] | None = None
    ) -> None:
        self._consumers = consumers
        #: On a cluster member that does not lead: the text of the ``-NOTLEADER`` error (the
        #: leader's RESP ``host:port``, or ``none``, first) every command but `ANY_MEMBER` answers.
        self.not_leader = not_leader
        #: A cluster leader's read check (`raft/readguard.py`): awaited before every command but
        #: `ANY_MEMBER`; None to serve it, else the text of its ``-NOTLEADER`` error (None: a single
        #: node, every command is served).
        self.gate: Callable[[], Awaitable[str | None]] | None = None
        self.token = None if token is None else token.encode()
        self.table: dict[bytes, Handler] = {
            b"PING": self.ping,
            b"QUIT": self.quit,
            b"COMMAND": self.command,
            b"HELLO": self.hello,
            b"AUTH": self.auth,
            b"LPUSH": self.push,
            b"RPUSH": self.push,
            b"LLEN": self.llen,
            b"LPOP": self.pop,
            b"RPOP": self.pop,
            b"BLPOP": self.blocking_pop,
            b"BRPOP": self.blocking_pop,
            b"XADD": self.xadd,
            b"XGROUP": self.xgroup,
            b"XREADGROUP": self.xreadgroup,
            b"XACK": self.xack,
            b"XLEN": self.xlen,
            b"XINFO": self.xinfo,
        }

    @property
    def consumers(self) -> Consumers:
        """The engine's operations (`run` answers NOTLEADER before any command needs them on a
        member that does not lead)."""
        assert self._consumers is not None
        return self._consumers

    def serve(self, consumers: Consumers) -> None:
        """Start serving every command over ``consumers`` (this cluster member now leads)."""
        self._consumers = consumers
        self.not_leader = None

    async def run(self, conn: RespConnection, args: list[bytes]) -> bytes:
        """Serve one command; returns its encoded reply (an error reply for anything refused)."""
        name = args[0].upper() if len(args[0]) <= 32 else b""
        handler = self.table.get(name)
        if not conn.authenticated and name not in BEFORE_AUTH:
            return encode(error("NOAUTH", "Authentication required."))
        if handler is None:
            return encode(unknown_command(args))
        if self.not_leader is not None and name not in ANY_MEMBER:
            return encode(error("NOTLEADER", self.not_leader()))
        if self.gate is not None and name not in ANY_MEMBER:
            refused = await self.gate()
            if refused is not None:
                return encode(error("NOTLEADER", refused))
        try:
            return encode(await handler(conn, args))
        except CommandError as exc:
            return encode(exc.reply)
        except EngineError as exc:
            return encode(engine_error(exc))
        except Exception as exc:  # a bug: answer, log, and go on serving
            log.exception("RESP command %s from %s failed", _show(args[0]), conn.peer)
            return encode(error("INTERNAL", f"internal error ({type(exc).__name__}); see the server log"))

    # -- connection ---------------------------------------------------------------------------------

    async def ping(self, conn: RespConnection, args: list[bytes]) -> Reply:
        if len(args) > 2:
            raise wrong_arity(args)
        return _PONG if len(args) == 1 else args[1]

    async def quit(self, conn: RespConnection, args: list[bytes]) -> Reply:
        conn.quitting = True
        return _OK

    async def command(self, conn: RespConnection, args: list[bytes]) -> Reply:
        return Raw(EMPTY_ARRAY)  # no command table: clients fall back to their built-in knowledge

    async def hello(self, conn: RespConnection, args: list[bytes]) -> Reply:
        if len(args) > 1:
            try:
                version = int(args[1])
            except ValueError:
                raise CommandError(
                    error("ERR", "Protocol version is not an integer or out of range")
                ) from None
            if version != 2:
                raise CommandError(
                    error(
                        "NOPROTO", "sorry, this protocol version is not supported: this server speaks RESP2"
                    )
                )
        i = 2
        while i < len(args):
            option = args[i].upper()
            if option == b"AUTH" and i + 2 < len(args):
                if self.token is not None:
                    self._authenticate(conn, args[i + 2])
                i += 3
            elif option == b"SETNAME" and i + 1 < len(args):
                i += 2
            else:
                raise CommandError(error("ERR", f"Syntax error in HELLO option '{_show(args[i])}'"))
        if not conn.authenticated:
            raise CommandError(
                error("NOAUTH", "HELLO must be called with the client already authenticated, or with AUTH")
            )
        return [
            b"server", b"spitfire", b"version", SERVER_VERSION, b"proto", 2, b"id", conn.id,
            b"mode", b"standalone", b"role", b"master", b"modules", [],
        ]  # fmt: skip

    async def auth(self, conn: RespConnection, args: list[bytes]) -> Reply:
        if len(args) not in (2, 3):
            raise wrong_arity(args)
        if self.token is None and len(args) == 3:
            return _OK  # as Redis's default user without a password: any AUTH user password passes
        self._authenticate(conn, args[-1])  # AUTH user password: the user name is not checked
        return _OK

    def _authenticate(self, conn: RespConnection, password: bytes) -> None:
        if self.token is None:
            raise CommandError(
                error(
                    "ERR",
                    "AUTH <password> called without any password configured for the default user. "
                    "Are you sure your configuration is correct?",
                )
            )
        if not hmac.compare_digest(password, self.token):
            raise CommandError(error("WRONGPASS", "invalid username-password pair or user is disabled."))
        conn.authenticated_now()

    # -- lists --------------------------------------------------------------------------------------

    async def push(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """LPUSH/RPUSH key value [value ...]: each value a job on queue ``key`` (both append:
        jobs are taken in Spitfire's order, not from either end). Answers the jobs now waiting."""
        if len(args) < 3:
            raise wrong_arity(args)
        queue = text_of(args[1], "key")
        _, waiting = await self.consumers.push(queue, [job_of(queue, value) for value in args[2:]])
        return waiting

    async def llen(self, conn: RespConnection, args: list[bytes]) -> Reply:
        if len(args) != 2:
            raise wrong_arity(args)
        return self.consumers.waiting(text_of(args[1], "key"))

    async def pop(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """LPOP/RPOP key [count]: the next ready jobs, done once answered (at-most-once)."""
        if len(args) not in (2, 3):
            raise wrong_arity(args)
        queue = text_of(args[1], "key")
        count = None if len(args) == 2 else int_of(args[2])
        if count == 0:
            return Raw(EMPTY_ARRAY)
        jobs = await self.consumers.pop([queue], count or 1, POP_HOLDER)
        if count is None:
            return value_of(jobs[0]) if jobs else None
        return [value_of(job) for job in jobs] if jobs else Raw(NIL_ARRAY)

    async def blocking_pop(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """BLPOP/BRPOP key [key ...] timeout: [key, value] of the next ready job of any of the keys
        (Spitfire's order across them), waiting up to ``timeout`` seconds (0: forever)."""
        if len(args) < 3:
            raise wrong_arity(args)
        queues = [text_of(arg, "key") for arg in args[1:-1]]
        wait = timeout_of(args[-1])
        jobs = await conn.block(self.consumers.pop(queues, 1, POP_HOLDER, wait=0.0 if conn.eof else wait))
        if not jobs:
            return Raw(NIL_ARRAY)
        return [jobs[0].queue, value_of(jobs[0])]

    # -- streams ------------------------------------------------------------------------------------

    async def xadd(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] n [LIMIT n]] * field value [...]: one job whose
        payload is the fields as a JSON object; answers its id. MAXLEN and MINID are ignored."""
        if len(args) < 5:
            raise wrong_arity(args)
        queue = text_of(args[1], "key")
        i, create = 2, True
        while i < len(args):
            option = args[i].upper()
            if option == b"NOMKSTREAM":
                create, i = False, i + 1
            elif option in (b"MAXLEN", b"MINID"):
                i += 2 if i + 1 < len(args) and args[i + 1] in (b"=", b"~") else 1
                i += 1  # the threshold: trimming is not done (jobs leave by retention)
                if i < len(args) and args[i].upper() == b"LIMIT":
                    i += 2
            else:
                break
        if i >= len(args):
            raise syntax_error()
        if args[i] != b"*":
            raise CommandError(error("ERR", "XADD takes * as the id: entry ids are the server's job ids"))
        fields = args[i + 1 :]
        if not fields or len(fields) % 2:
            raise wrong_arity(args)
        if not create and self.consumers.counts(queue) is None:
            return None
        jobs, _ = await self.consumers.push(queue, [entry_of(queue, fields)])
        return jobs[0].id

    async def xgroup(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """XGROUP CREATE key group id [MKSTREAM] [ENTRIESREAD n]: OK (groups are names only: every
        job is delivered once across all groups)."""
        if len(args) < 2:
            raise wrong_arity(args)
        sub = args[1].upper()
        if sub != b"CREATE":
            raise CommandError(
                error("ERR", f"unknown subcommand '{_show(args[1])}'. Only XGROUP CREATE is supported")
            )
        if len(args) < 5:
            raise CommandError(error("ERR", "wrong number of arguments for 'xgroup|create' command"))
        queue = text_of(args[2], "key")
        holder_of(args[3], b"-")  # the group name must be one a consumer can use
        options = [arg.upper() for arg in args[5:]]
        if b"MKSTREAM" not in options and self.consumers.counts(queue) is None:
            raise CommandError(
                error(
                    "ERR",
                    "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
                    "to use the MKSTREAM option to create an empty stream automatically.",
                )
            )
        self.consumers.check_queue(queue)  # the stream comes into being with its first entry
        return _OK

    async def xreadgroup(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """XREADGROUP GROUP g consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key [...] id [...]:
        ``>`` claims new jobs for the consumer (leased for the job's timeout; NOACK: done at once),
        any other id lists the consumer's pending jobs after it (``0``: all of them)."""
        if len(args) < 7 or args[1].upper() != b"GROUP":
            raise wrong_arity(args) if len(args) < 7 else syntax_error()
        holder = holder_of(args[2], args[3])
        count, block, noack, streams = _read_options(args, 4)
        if not streams or len(streams) % 2:
            raise CommandError(
                error(
                    "ERR",
                    "Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' must be "
                    "specified.",
                )
            )
        half = len(streams) // 2
        keys = [text_of(key, "key") for key in streams[:half]]
        ids = streams[half:]
        limit = min(count or MAX_TAKE, MAX_TAKE)
        new = [key for key, given in zip(keys, ids, strict=True) if given == b">"]
        history = len(new) < len(keys)
        claimed: list[Job] = []
        if new:
            wait = 0.0 if block is None or history else (math.inf if block == 0 else block / 1000)
            take = self.consumers.pop if noack else self.consumers.claim
            claimed = await conn.block(take(new, limit, holder, wait=0.0 if conn.eof else wait))
        out: list[Reply] = []
        for key, given in zip(keys, ids, strict=True):
            if given == b">":
                entries: list[Reply] = [entry(job) for job in claimed if job.queue == key]
                if entries:
                    out.append([key, entries])
            else:
                pending = self.consumers.pending(key, holder, text_of(given, "id"), limit)
                listed: list[Reply] = [entry(job) for job in pending]
                out.append([key, listed])
        return out if out else Raw(NIL_ARRAY)

    async def xack(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """XACK key group id [id ...]: acks the jobs a consumer of ``group`` holds; answers how many."""
        if len(args) < 4:
            raise wrong_arity(args)
        queue = text_of(args[1], "key")
        prefix = holder_of(args[2], b"")
        return await self.consumers.ack(queue, [text_of(arg, "id") for arg in args[3:]], prefix)

    async def xlen(self, conn: RespConnection, args: list[bytes]) -> Reply:
        if len(args) != 2:
            raise wrong_arity(args)
        counts = self.consumers.counts(text_of(args[1], "key"))
        return 0 if counts is None else counts["total"]

    async def xinfo(self, conn: RespConnection, args: list[bytes]) -> Reply:
        """XINFO STREAM key: length (jobs the queue holds), pending (waiting), claimed, completed."""
        if len(args) < 3:
            raise wrong_arity(args)
        if args[1].upper() != b"STREAM":
            raise CommandError(
                error("ERR", f"unknown subcommand '{_show(args[1])}'. Only XINFO STREAM is supported")
            )
        counts = self.consumers.counts(text_of(args[2], "key"))
        if counts is None:
            raise CommandError(error("ERR", "no such key"))
        return [
            b"length", counts["total"], b"pending", counts["waiting"], b"claimed", counts["claimed"],
            b"completed", counts["succeeded"], b"dead", counts["dead"], b"cancelled", counts["cancelled"],
            b"first-entry", None, b"last-entry", None,
        ]  # fmt: skip


def _read_options(args: list[bytes], i: int) -> tuple[int | None, int | None, bool, list[bytes]]:
    """XREADGROUP's COUNT, BLOCK and NOACK from ``args[i:]``, and what follows STREAMS."""
    count: int | None = None
    block: int | None = None
    noack = False
    while i < len(args):
        option = args[i].upper()
        if option == b"STREAMS":
            return count, block, noack, args[i + 1 :]
        if option == b"NOACK":
            noack, i = True, i + 1
        elif option in (b"COUNT", b"BLOCK") and i + 1 < len(args):
            value = int_of(args[i + 1])
            if option == b"COUNT":
                count = value
            else:
                block = value
            i += 2
        else:
            raise syntax_error()
    raise syntax_error()


def unknown_command(args: list[bytes]) -> RespError:
    """Redis's answer to a command it does not know, naming it and its first arguments."""
    shown = " ".join(f"'{_show(arg, 32)}'" for arg in args[1:4])
    return error("ERR", f"unknown command '{_show(args[0])}', with args beginning with: {shown}")


# -- connections --------------------------------------------------------------------------------------


class RespConnection(asyncio.Protocol):
    """The server side of one RESP connection."""

    def __init__(self, server: RespServer) -> None:
        self.server = server
        self.id = next(_ids)
        self.reader = RequestReader(server.limits)
        self.authenticated = server.commands.token is None
        #: QUIT was served: close once its answer is written.
        self.quitting = False
        self.peer = "?"
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._inbox: collections.deque[tuple[list[bytes] | None, int]] = collections.deque()
        self._inbox_bytes = 0
        self._wake = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None
        #: Pipelined pushes running concurrently, oldest first (answered in this order).
        self._flight: collections.deque[asyncio.Task[bytes]] = collections.deque()
        self._reading = True
        self._busy = False
        self._closing = False
        #: The client sent its last byte: blocking commands do not wait.
        self.eof = False
        #: A blocking command is waiting for a job (EOF gives it up).
        self.blocking = False
        self._request_timer: asyncio.TimerHandle | None = None
        self._auth_timer: asyncio.TimerHandle | None = None

    @property
    def reading(self) -> bool:
        """False while reading from the client is paused (too many commands wait, or an error)."""
        return self._reading

    @property
    def writable(self) -> bool:
        """False while the client does not read its answers (the transport's buffer is full)."""
        return self._writable.is_set()

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # (uvloop's transports do not subclass it)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self.server.admit(self):
            transport.write(encode(error("ERR", "max number of clients reached")))
            transport.close()
            self._transport = None
            return
        self._task = self._loop.create_task(self._serve())
        if not self.authenticated:
            self._auth_timer = self._loop.call_later(self.server.handshake_timeout, self._auth_due)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._closing:
            return
        reader = self.reader
        requests = reader.feed(data)
        for request in requests:
            size = sum(map(len, request))
            self._inbox.append((request, size))
            self._inbox_bytes += size
        if reader.error is not None:
            if self._reading:  # (once: nothing is read after the error)
                self._inbox.append((None, 0))  # answered after the commands before it
            self._pause_reading()
        elif reader.partial and self._request_timer is None:
            self._arm_request_timer()
        if len(self._inbox) >= MAX_INBOX or self._inbox_bytes >= MAX_INBOX_BYTES:
            self._pause_reading()
        if self._inbox:
            self._wake.set()

    def eof_received(self) -> bool | None:
        """The client sent its last byte (it closed, or half-closed): answer the commands it sent,
        then close. A blocking command's wait is given up at once, taking nothing: a client that
        closed its side is gone as far as Redis is concerned, and nobody may read what it would take
        (later blocking commands do not wait either)."""
        self.eof = True
        self._wake.set()
        if self.blocking and self._task is not None:
            self._task.cancel()
        return True  # keep the transport open for the answers

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget everything: a command in progress (a blocking pop's wait included) is cancelled."""
        for timer in (self._request_timer, self._auth_timer):
            if timer is not None:
                timer.cancel()
        self._request_timer = self._auth_timer = None
        self._inbox.clear()
        self._transport = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.server.closed(self)

    # -- serving ------------------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            await self._serve_inbox()
        except asyncio.CancelledError:
            pass  # the client went away (a blocking command's wait ends with it)
        except Exception:  # a bug: this connection ends, the server goes on
            log.exception("RESP connection %d from %s failed", self.id, self.peer)
        finally:
            self.close()

    async def _serve_inbox(self) -> None:
        inbox = self._inbox
        commands = self.server.commands
        flight = self._flight
        while not self._closing:
            if not inbox:
                await self._land()  # answer the pushes in flight before waiting for more
                if self.eof or self._closing:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            request, size = inbox.popleft()
            self._inbox_bytes -= size
            if request is None:
                await self._land()
                log.warning("closing RESP connection %d from %s: %s", self.id, self.peer, self.reader.error)
                self._write(encode(error("ERR", f"Protocol error: {self.reader.error}")))
                break
            if not self._reading and len(inbox) < MAX_INBOX // 2 and self._inbox_bytes < MAX_INBOX_BYTES // 2:
                self._resume_reading()
            if (
                self.authenticated
                and len(flight) < MAX_PUSHES_IN_FLIGHT
                and len(request[0]) <= 5
                and request[0].upper() in _PUSHES
            ):
                flight.append(self._loop.create_task(commands.run(self, request)))
                continue
            await self._land()
            self._busy = True
            try:
                reply = await commands.run(self, request)
            finally:
                self._busy = False
            self._write(reply)
            if self.quitting:
                break
            if not self._writable.is_set():
                await self._writable.wait()
        await self._land()

    async def _land(self) -> None:
        """Answer the pushes in flight, in order, as each one's commit resolves. (Shielded: a push
        the client sent is carried out even if the client goes away meanwhile, as in Redis.)"""
        flight = self._flight
        while flight:
            reply = await asyncio.shield(flight[0])
            flight.popleft()
            self._write(reply)
            if not self._writable.is_set():
                await self._writable.wait()

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._transport is not None and self.reader.error is None:
            self._reading = True
            self._transport.resume_reading()

    # -- deadlines ----------------------------------------------------------------------------------

    def _arm_request_timer(self) -> None:
        completed = self.reader.completed
        self._request_timer = self._loop.call_later(self.server.request_timeout, self._request_due, completed)

    def _request_due(self, completed: int) -> None:
        self._request_timer = None
        if not self.reader.partial:
            return
        if self.reader.completed != completed or not self._reading:
            # That one completed and another is half here, or the server itself stopped reading
            # (commands wait to be served): not the client's slowness, time it afresh.
            self._arm_request_timer()
            return
        timeout = self.server.request_timeout
        log.warning(
            "closing RESP connection %d from %s: a command was not completed within %g s",
            self.id,
            self.peer,
            timeout,
        )
        self._write(encode(error("ERR", f"Protocol error: a command was not completed within {timeout:g} s")))
        self.close()

    def _auth_due(self) -> None:
        self._auth_timer = None
        if not self.authenticated:
            log.warning(
                "closing RESP connection %d from %s: no AUTH within the handshake timeout", self.id, self.peer
            )
            self._write(
                encode(error("NOAUTH", "Authentication required: no AUTH within the handshake timeout"))
            )
            self.close()

    async def block(self, take: Awaitable[list[Job]]) -> list[Job]:
        """Await a pop or claim that may wait, marked as blocking (EOF cancels it)."""
        self.blocking = True
        try:
            return await take
        finally:
            self.blocking = False

    def authenticated_now(self) -> None:
        """AUTH succeeded: everything works from now on."""
        self.authenticated = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    # -- closing ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close after what is written (the transport flushes its buffer first)."""
        self._closing = True
        self._wake.set()
        if self._transport is not None:
            self._transport.close()

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else once the command in progress is answered
        (commands not started yet are dropped unserved: they changed nothing)."""
        self._closing = True
        self._inbox.clear()
        if not self._busy and not self._flight:
            self.close()

    def abort(self) -> None:
        """Close at once, dropping unwritten answers (shutdown grace ran out)."""
        if self._transport is not None:
            self._transport.abort()


class RespServer:
    """The RESP2 listener: its connections and what they share.

    On a cluster member that does not lead, ``consumers`` is None and ``not_leader`` gives the text
    of the ``-NOTLEADER`` error every data command answers; `serve` hands it the engine's.
    ``max_payload`` bounds a bulk string (a value larger than a payload may be cannot be one);
    ``request_timeout`` bounds how long a request may stay half sent; ``handshake_timeout`` how long
    a connection may stay unauthenticated when there is a token.
    """

    def __init__(
        self,
        consumers: Consumers | None,
        *,
        token: str | None,
        max_connections: int,
        handshake_timeout: float,
        max_payload: int,
        request_timeout: float | None = None,
        not_leader: Callable[[], str] | None = None,
    ) -> None:
        if consumers is None and not_leader is None:
            raise ValueError("a RESP listener without an engine needs not_leader (a cluster member)")
        self.consumers = consumers
        self.commands = Commands(consumers, token, not_leader)
        self.limits = Limits(max_args=MAX_ARGS, max_bulk=max_payload, max_request=MAX_REQUEST)
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.request_timeout = handshake_timeout if request_timeout is None else request_timeout
        self.connections: dict[int, RespConnection] = {}
        #: Connections refused since the limit was last reached (0: not refusing).
        self.refused = 0
        #: ``redis://host:port`` once listening.
        self.url = ""
        self._server: asyncio.Server | None = None
        self._empty = asyncio.Event()
        self._empty.set()

    def serve(self, consumers: Consumers) -> None:
        """Serve every command over ``consumers`` from now on (a cluster member that now leads)."""
        self.consumers = consumers
        self.commands.serve(consumers)

    async def start(self, host: str, port: int) -> str:
        """Listen; returns ``redis://host:port`` (the bound port when 0 was asked for).

        :raises OSError: the address is taken or not local.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: RespConnection(self), host, port)
        bound = self._server.sockets[0].getsockname()[1] if self._server.sockets else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"redis://{shown}:{bound}"
        return self.url

    def admit(self, conn: RespConnection) -> bool:
        """Register a connection, or False past ``max_connections`` (logged once per burst)."""
        if len(self.connections) >= self.max_connections:
            if not self.refused:
                log.warning(
                    "refusing new RESP connections: %d are open, the limit (--max-connections %d)",
                    len(self.connections),
                    self.max_connections,
                )
            self.refused += 1
            return False
        if self.refused:
            log.info("accepting RESP connections again (%d were refused at the limit)", self.refused)
            self.refused = 0
        self.connections[conn.id] = conn
        self._empty.clear()
        return True

    def closed(self, conn: RespConnection) -> None:
        if self.connections.pop(conn.id, None) is not None and not self.connections:
            self._empty.set()

    async def close(self, grace: float) -> None:
        """Stop accepting, end waits, let commands in progress finish for up to ``grace`` seconds,
        then close every connection (idempotent)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.consumers is not None:
            self.consumers.close()
        for conn in list(self.connections.values()):
            conn.shutdown()
        if not self.connections:
            return
        try:
            await asyncio.wait_for(self._empty.wait(), grace)
        except TimeoutError:
            log.warning(
                "%d RESP connections still busy after %.1f s; closing anyway", len(self.connections), grace
            )
            for conn in list(self.connections.values()):
                conn.abort()
