"""The HTTP upgrade request a connection was opened with, and what the handshake may answer.

:class:`Request` is what ``connection.request`` and ``WebSocketHandler.on_handshake`` see:
path, query parameters, headers, cookies, origin, subprotocols and remote address, each
parsed from picows's upgrade request on first use (nothing is parsed for a connection whose
application never asks). :class:`Reject` refuses a handshake with an HTTP status.
:class:`OriginPolicy` is the ``allowed_origins`` check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = [
    "OriginPolicy",
    "Reject",
    "Request",
    "bind_remote_address",
    "normalize_origin",
    "seed_session",
    "share_headers",
    "take_session",
]

_EMPTY_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class _RawRequest:
    """Stands for picows's ``WSUpgradeRequest`` when a :class:`Request` is built by hand (tests)."""

    __slots__ = ("headers", "method", "path", "version")

    def __init__(self, path: bytes, headers: CIMultiDict[str]) -> None:
        self.method = b"GET"
        self.path = path
        self.version = b"HTTP/1.1"
        self.headers = headers


class Request:
    """The HTTP upgrade request of a connection (read-only).

    ``connection.request`` in a handler (``on_connect``, RPC methods), and the argument of
    ``WebSocketHandler.on_handshake``. Fields are parsed from the request on first access.

    Attributes:
        path: the request path, percent-decoded, without the query string (``"/chat"``).
        query_string: the raw query string, without ``?`` (``"room=1&token=..."``).
        query_params: the query string parsed (read-only, case-sensitive multi-dict:
            ``query_params["room"]`` is the first value, ``getall("room")`` every value).
        headers: the request headers (read-only, case-insensitive multi-dict).
        cookies: the cookies of the ``Cookie`` header(s), name -> value (read-only).
        origin: the ``Origin`` header as sent (``None`` without one: non-browser clients).
        subprotocols: the subprotocols the client offered, in its order.
        remote_address: ``(host, port)`` of the client; ``None`` in ``on_handshake`` (picows
            does not pass the socket to the handshake), set once the connection is open.
        raw: picows's ``WSUpgradeRequest`` (``method``, ``path``, ``version`` as bytes,
            ``headers``), what ``connection.request`` was in webshocket 0.5.x.
    """

    __slots__ = (
        "_cookies",
        "_headers",
        "_path",
        "_query",
        "_query_string",
        "_raw",
        "_remote",
        "_session",
        "_subprotocols",
    )

    def __init__(self, raw: Any, remote_address: tuple[str, int] | None = None) -> None:
        self._raw = raw
        self._remote = remote_address
        self._session: dict[str, Any] | None = None  # what on_handshake seeded, until the connection takes it
        self._path: str | None = None
        self._query_string: str | None = None
        self._query: MultiDictProxy[str] | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self._cookies: Mapping[str, str] | None = None
        self._subprotocols: tuple[str, ...] | None = None

    @classmethod
    def build(
        cls,
        path: str = "/",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        remote_address: tuple[str, int] | None = None,
    ) -> Request:
        """A request made by hand, e.g. to unit-test an ``on_handshake`` hook::

        Request.build("/ws?token=abc", {"Origin": "https://app.example.com"})
        """
        return cls(_RawRequest(path.encode("utf-8"), CIMultiDict(headers)), remote_address)

    # ------------------------------------------------------------------ the target

    def _split_target(self) -> None:
        target: bytes = self._raw.path
        raw_path, _, query = target.partition(b"?")
        self._path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        self._query_string = query.decode("latin-1")

    @property
    def path(self) -> str:
        """The request path, percent-decoded, without the query string."""
        if self._path is None:
            self._split_target()
        return self._path  # type: ignore[return-value]

    @property
    def query_string(self) -> str:
        """The raw query string (without ``?``; ``""`` when there is none)."""
        if self._query_string is None:
            self._split_target()
        return self._query_string  # type: ignore[return-value]

    @property
    def query_params(self) -> MultiDictProxy[str]:
        """The query string parsed (``+`` and ``%XX`` decoded, blank values kept)."""
        query = self._query
        if query is None:
            text = self.query_string
            query = self._query = (
                MultiDictProxy(MultiDict(parse_qsl(text, keep_blank_values=True))) if text else _EMPTY_QUERY
            )
        return query

    # ------------------------------------------------------------------ headers

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The request headers (case-insensitive; ``getall(name)`` for repeated ones)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = CIMultiDictProxy(self._raw.headers)
        return headers

    @property
    def cookies(self) -> Mapping[str, str]:
        """Cookie name -> value, from the ``Cookie`` header(s) (the first of a repeated name wins)."""
        cookies = self._cookies
        if cookies is None:
            found: dict[str, str] = {}
            for header in self._raw.headers.getall("Cookie", ()):
                for part in header.split(";"):
                    name, sep, value = part.partition("=")
                    name = name.strip()
                    if not sep or not name:
                        continue
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    found.setdefault(name, value)
            cookies = self._cookies = MappingProxyType(found)
        return cookies

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header as sent, or ``None`` (browsers always send it; other clients may not)."""
        origin: str | None = self._raw.headers.get("Origin")
        return origin

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols offered in ``Sec-WebSocket-Protocol``, in the client's order."""
        offered = self._subprotocols
        if offered is None:
            offered = self._subprotocols = tuple(
                token
                for value in self._raw.headers.getall("Sec-WebSocket-Protocol", ())
                for token in (part.strip() for part in value.split(","))
                if token
            )
        return offered

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the client; ``None`` during ``on_handshake``."""
        return self._remote

    @property
    def raw(self) -> Any:
        """picows's ``WSUpgradeRequest`` this request was parsed from."""
        return self._raw

    def __repr__(self) -> str:  # no query string, headers or cookies: they may carry secrets
        return f"<Request path={self.path!r} origin={self.origin!r} remote_address={self._remote!r}>"


MAX_SHARED_NAMES = 256
"""Header names :func:`share_headers` keeps one object of (more are left as they are)."""
SHARED_VALUES = frozenset(
    name.lower()
    for name in (
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Origin",
        "User-Agent",
        "Accept-Encoding",
        "Accept-Language",
        "Cache-Control",
        "Pragma",
    )
)
"""Headers whose value is usually the same for every client, and never a secret: the last one
seen is kept, and a request with the same value gets that object."""
_names: dict[str, tuple[str, bool]] = {}  # header name -> (its shared object, whether its value is shared)
_values: dict[str, str] = {}  # header name -> the last value seen


def share_headers(raw: Any) -> None:
    """Give picows's upgrade request (kept as long as its connection) the same headers, in the same
    order, made of shared objects: one per header name, and one value of each header in
    :data:`SHARED_VALUES` when it is the last one seen. picows parses each request into new
    strings: ~1.7 KiB for a typical client, ~0.5 KiB once shared."""
    names = _names
    values = _values
    pairs = []
    for name, value in raw.headers.items():  # the names come as multidict's istr, which keeps its lower case
        entry = names.get(name)
        if entry is None:
            entry = (name, name.lower() in SHARED_VALUES)
            if len(names) < MAX_SHARED_NAMES:
                names[name] = entry
        shared, value_shared = entry
        if value_shared:
            last = values.get(shared)
            if last == value:
                value = last
            else:
                values[shared] = value
        pairs.append((shared, value))
    raw.headers = CIMultiDict(pairs)


def bind_remote_address(request: Request, address: tuple[str, int]) -> None:
    """Set the remote address of a request made before the connection was open (for the engine)."""
    if request._remote is None:
        request._remote = address


def seed_session(request: Request, values: dict[str, Any]) -> None:
    """Keep the session values ``on_handshake`` returned until the connection is made (for the server)."""
    request._session = values


def take_session(request: Request) -> dict[str, Any] | None:
    """The session values seeded at the handshake, once (for the engine, when the connection opens)."""
    values = request._session
    request._session = None
    return values


# ---------------------------------------------------------------------------- refusing a handshake


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CTL = re.compile(r"[\x00-\x1f\x7f]")


class Reject(Exception):
    """Raise in ``on_handshake`` to refuse the connection with an HTTP error before the upgrade.

    .. code-block:: python

        def on_handshake(self, request):
            if request.query_params.get("token") != SECRET:
                raise webshocket.Reject(401, "A valid token is required.")

    Args:
        status: an HTTP error status (400-599), e.g. 401, 403, 429, 503.
        reason: a short text sent as the response body (``text/plain``).
        headers: extra response headers, e.g. ``{"Retry-After": "30"}`` for 429.
    """

    def __init__(self, status: int = 403, reason: str = "", headers: Mapping[str, str] | None = None) -> None:
        try:
            known = HTTPStatus(status)
        except ValueError:
            raise ValueError(f"Reject status must be a standard HTTP status code, got {status!r}") from None
        if not 400 <= known < 600:
            raise ValueError(f"Reject status must be an HTTP error (400-599), got {status}")
        if not isinstance(reason, str):
            raise TypeError(f"Reject reason must be a str (sent as the response body), got {type(reason).__name__}")
        extra = dict(headers or {})
        for name, value in extra.items():  # what goes into the response head: no header injection
            if not _TOKEN.fullmatch(name) or not isinstance(value, str) or _CTL.search(value):
                raise ValueError(f"Reject header {name!r}: {value!r} is not a valid HTTP header")
        super().__init__(status, reason)
        self.status = int(known)
        self.reason = reason or known.phrase
        self.headers = extra

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


# ---------------------------------------------------------------------------- allowed origins

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LABELS = r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*"
_ORIGIN = re.compile(rf"([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|{_LABELS})(?::([0-9]{{1,5}}))?")
_PATTERN = re.compile(rf"([a-z][a-z0-9+.-]*)://(\*\.)?(\[[0-9a-f:.]+\]|{_LABELS})(?::([0-9]{{1,5}}))?")

Origin = tuple[str, str, int | None]
"""A normalized origin: (scheme, host, port), lower case, the scheme's default port as None."""


def _port(scheme: str, text: str | None) -> int | None:
    if text is None:
        return None
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(port)
    return None if _DEFAULT_PORTS.get(scheme) == port else port


def normalize_origin(origin: str) -> Origin | None:
    """``(scheme, host, port)`` of a serialized origin (``https://Example.com:443`` -> ``("https",
    "example.com", None)``); None if it is not exactly ``scheme://host[:port]``."""
    match = _ORIGIN.fullmatch(origin.lower())
    if match is None:
        return None
    scheme, host, port = match.groups()
    try:
        return scheme, host, _port(scheme, port)
    except ValueError:
        return None


_MAX_VERDICTS = 1024


class OriginPolicy:
    """The ``allowed_origins`` check: exact origins and ``scheme://*.domain[:port]`` wildcards.

    A wildcard's ``*`` stands for one or more whole DNS labels at the left of the host:
    ``https://*.example.com`` allows ``https://a.example.com`` and ``https://a.b.example.com``,
    not ``https://example.com`` (list it too), ``https://example.com.evil.com``,
    ``http://a.example.com`` (another scheme) or ``https://a.example.com:8443`` (another port).
    Scheme and host compare case-insensitively, a scheme's default port may be written or not.
    An ``Origin`` header that is not exactly ``scheme://host[:port]`` (a path, user info,
    ``null``, several ``Origin`` headers) is never allowed.

    Raises:
        ValueError: a pattern is malformed (the message names it).
    """

    __slots__ = ("_verdicts", "allow_missing", "exact", "patterns", "wildcards")

    def __init__(self, patterns: Iterable[str], allow_missing: bool = True) -> None:
        self.patterns = tuple(patterns)
        self.allow_missing = allow_missing
        self.exact: frozenset[Origin] = frozenset()
        self.wildcards: tuple[tuple[str, str, int | None], ...] = ()
        exact: set[Origin] = set()
        wildcards: list[tuple[str, str, int | None]] = []
        for pattern in self.patterns:
            if not isinstance(pattern, str):
                raise ValueError(f"allowed_origins: expected origin strings, got {pattern!r}")
            match = _PATTERN.fullmatch(pattern.strip().lower())
            if match is None:
                raise ValueError(
                    f"allowed_origins: {pattern!r} is not an origin; write scheme://host[:port] (no path, no "
                    "trailing slash), with an optional '*.' before the domain: 'https://*.example.com'"
                )
            scheme, star, host, port_text = match.groups()
            try:
                port = _port(scheme, port_text)
            except ValueError:
                raise ValueError(f"allowed_origins: {pattern!r} has an invalid port") from None
            if star:
                if host.startswith("["):
                    raise ValueError(f"allowed_origins: {pattern!r}: '*.' goes before a domain name, not an address")
                wildcards.append((scheme, "." + host, port))
            else:
                exact.add((scheme, host, port))
        self.exact = frozenset(exact)
        self.wildcards = tuple(wildcards)
        self._verdicts: dict[str, bool] = {}  # Origin header -> allowed: most connections come from a few sites

    def allows(self, origins: list[str]) -> bool:
        """Whether a request with these ``Origin`` header values (usually one, or none) may connect."""
        if not origins:
            return self.allow_missing
        if len(origins) != 1:
            return False
        header = origins[0]
        verdicts = self._verdicts
        verdict = verdicts.get(header)
        if verdict is None:
            verdict = self.check(header)
            if len(verdicts) >= _MAX_VERDICTS:  # bounded, whatever a client sends
                verdicts.clear()
            verdicts[header] = verdict
        return verdict

    def check(self, header: str) -> bool:
        """Whether one ``Origin`` header value is allowed (uncached)."""
        origin = normalize_origin(header)
        if origin is None:
            return False
        if origin in self.exact:
            return True
        scheme, host, port = origin
        for w_scheme, suffix, w_port in self.wildcards:
            # host matched _LABELS whole, so what precedes the suffix (which starts with ".") is
            # one or more complete, non-empty labels
            if scheme == w_scheme and port == w_port and len(host) > len(suffix) and host.endswith(suffix):
                return True
        return False

    def __repr__(self) -> str:
        return f"OriginPolicy({list(self.patterns)!r}, allow_missing={self.allow_missing})"
