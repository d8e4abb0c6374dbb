"""Command line: ``webshocket serve module:Handler`` (like uvicorn), ``webshocket bench`` and ``webshocket capacity``.

Also reachable as ``python -m webshocket``. Every option of ``serve`` can also be given as
an environment variable ``WEBSHOCKET_<OPTION>`` (``WEBSHOCKET_PORT``, ``WEBSHOCKET_MAX_CONNECTION``,
``WEBSHOCKET_HANDLER`` for the handler); the command line wins. A mistake (a bad value, a
missing file, Redis down, a handler that cannot be imported) ends the command with one
line on stderr naming the value and the fix, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import json
import logging
import logging.config
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .constant import DEFAULT_MAX_MESSAGE_SIZE
from .server import REDIS_SCHEMES, WebSocketServer, split_urls

if TYPE_CHECKING:
    from .backplane import Backplane
    from .metrics import MetricsEndpoint

__all__ = ["ENV_PREFIX", "CliError", "build_parser", "load_handler", "main"]

_logger = logging.getLogger("webshocket.cli")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENV_PREFIX = "WEBSHOCKET_"
"""``serve``'s option ``--max-connection`` is also read from ``WEBSHOCKET_MAX_CONNECTION``, and so on."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """An operator's mistake: reported as one line on stderr, exit status ``status``, no traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------- parsing


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (:class:`CliError`) instead of usage and exit."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (\S+): ", r"\1 ", message)
        if message.startswith("the following arguments are required"):
            message += " (see 'webshocket --help')"
        elif "invalid choice" in message:
            message += f" (see '{self.prog} --help')"
        raise CliError(message, 2)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a port number; use 0 to 65535 (0: any free port)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: out of range; use a port from 0 to 65535 (0: any free port)")
    return value


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: not a whole number; give {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: too small; give {what}")
        return value

    convert.__name__ = "integer"
    return convert


def _seconds(positive: bool) -> Callable[[str], float]:
    def convert(text: str) -> float:
        what = "a number of seconds above 0" if positive else "a number of seconds, 0 or more"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: not a number; give {what}") from None
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text}: out of range; give {what}")
        return value

    convert.__name__ = "seconds"
    return convert


def _backplane_url(text: str) -> str:
    """One Redis URL, or several separated by commas (a sharded backplane)."""
    for url in split_urls(text):
        _check_redis_url(url, text)
    return text


def _check_redis_url(url: str, text: str) -> None:
    if url.startswith(REDIS_SCHEMES):
        return
    example = "redis://127.0.0.1:6379/0"
    if re.fullmatch(r"[\w.\-]+:\d+(/\d+)?", url):
        host_port, _, db = url.partition("/")
        example = f"redis://{host_port}/{db or 0}"
    elif re.fullmatch(r"[\w.\-]+", url):
        example = f"redis://{url}:6379/0"
    where = "" if url == text else f" (in {text})"
    raise argparse.ArgumentTypeError(
        f"{url}{where}: not a redis:// URL; write it as {example} "
        "(rediss:// for TLS, unix:///path/redis.sock for a socket)"
    )


def _existing_file(what: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not os.path.exists(text):
            raise argparse.ArgumentTypeError(f"{text}: no such file; give the path of {what}")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text}: is a directory; give the path of {what}")
        if not os.access(text, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied); give {what} we can read")
        return text

    convert.__name__ = "file"
    return convert


def _lower(choices: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.lower()
        if value not in choices:
            raise argparse.ArgumentTypeError(f"{text}: not one of {', '.join(choices)}")
        return value

    convert.__name__ = "choice"
    return convert


def _origin_list(text: str) -> list[str]:
    """Origins separated by commas or spaces, each checked as ``allowed_origins`` checks it."""
    from .request import OriginPolicy

    origins = [origin for origin in re.split(r"[,\s]+", text) if origin]
    try:
        OriginPolicy(origins)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text}: {str(exc).removeprefix('allowed_origins: ')}") from None
    return origins


_origin_list.__name__ = "origins"


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text}: not a yes/no value; give 1, true, yes or 0, false, no")


class _AllowedOrigins(argparse.Action):
    """``--allowed-origin``, repeatable: each adds origins; the command line replaces the environment's list."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        current = getattr(namespace, self.dest, None)
        origins = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, origins + list(values))


class _Switch(argparse.Action):
    """A flag without a value on the command line; its environment variable says 1/true/yes or 0/false/no."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, type=_switch, **kwargs)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, True)


def build_parser() -> argparse.ArgumentParser:
    """The ``webshocket`` argument parser (``serve`` reads no environment here: see :func:`parse_serve_args`)."""
    parser = _Parser(prog="webshocket", description="Webshocket: RPC, streaming and pub/sub over WebSockets.")
    parser.add_argument("--version", action="version", version=f"webshocket {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run a server for a handler class",
        description="Run a WebSocket server for HANDLER until Ctrl-C (SIGINT) or SIGTERM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Every option can also be set with an environment variable: WEBSHOCKET_ and the option's\n"
            "name in capitals, '-' written '_' (WEBSHOCKET_PORT=8000, WEBSHOCKET_MAX_CONNECTION=1000;\n"
            "WEBSHOCKET_HANDLER=myapp:Handler for HANDLER). The command line wins over the environment.\n\n"
            "example: webshocket serve examples.chat:ChatHandler --port 8765 --workers 2 \\\n"
            "           --backplane redis://127.0.0.1:6379/0 --metrics-port 9100"
        ),
    )
    serve.add_argument(
        "handler",
        metavar="HANDLER",
        nargs="?",
        default=None,
        help="the WebSocketHandler subclass, as module:Class, importable from the current directory or PYTHONPATH",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=_port, default=8765, help="port to bind, 0 for any free one (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=_int_at_least(1, "1 or more processes"),
        default=1,
        help="processes sharing the port (SO_REUSEPORT) (default: %(default)s)",
    )
    serve.add_argument(
        "--backplane",
        type=_backplane_url,
        default=None,
        metavar="URL",
        help="scale-out backplane: redis://host:6379/0, rediss://... or unix:///path; several URLs, "
        "comma-separated and in the same order on every node, shard the channels over several Redis servers",
    )
    serve.add_argument(
        "--certfile", type=_existing_file("a PEM certificate chain"), help="TLS certificate chain (PEM): serve wss://"
    )
    serve.add_argument(
        "--keyfile", type=_existing_file("a PEM private key"), help="TLS private key (PEM), if not in --certfile"
    )
    serve.add_argument(
        "--max-connection", type=_int_at_least(1, "1 or more clients"), help="refuse clients beyond this many"
    )
    serve.add_argument(
        "--max-message-size",
        type=_int_at_least(1, "a size in bytes, 1 or more"),
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest message in bytes (default: %(default)s)",
    )
    serve.add_argument(
        "--max-subscribed-channels",
        type=_int_at_least(0, "0 (no limit) or more"),
        help="subscriptions per connection (default: 5; 0: no limit)",
    )
    serve.add_argument(
        "--max-send-buffer",
        type=_int_at_least(1, "a size in bytes, 1 or more"),
        help="bytes waiting per connection before backpressure (default: 1 MiB)",
    )
    serve.add_argument(
        "--slow-consumer-timeout",
        type=_seconds(positive=False),
        help="seconds a backlogged connection is kept (default: 5)",
    )
    serve.add_argument(
        "--max-total-send-backlog",
        type=_int_at_least(1, "a size in bytes"),
        help="bytes held for all connections together (default: 256 MiB)",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=_seconds(positive=True),
        help="seconds for the TLS and WebSocket handshakes (default: 5)",
    )
    serve.add_argument(
        "--error-detail",
        type=_lower(("full", "minimal")),
        metavar="{full,minimal}",
        help="what clients learn of unexpected errors: full (0.5.x) or minimal (type and reference id)",
    )
    serve.add_argument(
        "--allowed-origin",
        dest="allowed_origins",
        action=_AllowedOrigins,
        type=_origin_list,
        metavar="ORIGIN",
        help="a browser origin that may connect, e.g. https://app.example.com or https://*.example.com; "
        "repeat it (or separate with commas) for several; others get HTTP 403 (default: every origin)",
    )
    serve.add_argument(
        "--require-origin",
        action=_Switch,
        help="with --allowed-origin, also refuse requests without an Origin header (non-browser clients)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_seconds(positive=False),
        default=10.0,
        help="seconds RPCs get to finish at shutdown (default: %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        type=_lower(LOG_LEVELS),
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        help="logging level (default: info; with --log-config: the level of the 'webshocket' loggers, if given)",
    )
    serve.add_argument(
        "--log-config",
        type=_existing_file("a logging configuration (.json dictConfig or .ini fileConfig)"),
        metavar="FILE",
        help="logging configuration: a .json file (logging.config.dictConfig) or an .ini file (fileConfig)",
    )
    serve.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics and health at /health (0: any free port)",
    )
    serve.add_argument(
        "--metrics-host", default=None, metavar="HOST", help="address of the metrics endpoint (default: --host)"
    )
    for action in serve._actions:
        if action.dest != "help":
            action.help = f"{action.help} [env: {env_name(action.dest)}]"

    commands.add_parser(
        "bench",
        help="run the end-to-end benchmark suite, e.g. 'bench --quick' (see 'bench --help')",
        add_help=False,
    )
    commands.add_parser(
        "capacity",
        help="how many worker processes and Redis shards a workload needs (see 'capacity --help')",
        add_help=False,
    )
    return parser


def env_name(dest: str) -> str:
    """The environment variable of an option: ``max_connection`` -> ``WEBSHOCKET_MAX_CONNECTION``."""
    return ENV_PREFIX + dest.upper()


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices["serve"]
            return found
    raise LookupError("no serve command")  # pragma: no cover


def apply_environment(
    parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> list[tuple[argparse.Action, CliError]]:
    """Make the ``WEBSHOCKET_<OPTION>`` variables of ``environ`` the defaults of ``serve``'s options.

    Returns the errors of the variables whose value is not valid (reported if ``serve`` runs).
    """
    serve = _serve_parser(parser)
    defaults: dict[str, Any] = {}
    errors: list[tuple[argparse.Action, CliError]] = []
    for action in serve._actions:
        if action.dest == "help":
            continue
        name = env_name(action.dest)
        raw = environ.get(name, "")
        if not raw:
            continue
        try:
            defaults[action.dest] = action.type(raw) if callable(action.type) else raw
        except argparse.ArgumentTypeError as exc:
            reason = str(exc).removeprefix(f"{raw}: ")
            errors.append((action, CliError(f"{name}={raw}: {reason} (or unset {name})", 2)))
    serve.set_defaults(**defaults)
    return errors


def _given(action: argparse.Action, argv: Sequence[str]) -> bool:
    """True when ``argv`` gives ``action`` (the command line wins over the environment)."""
    if not action.option_strings:
        return False  # HANDLER takes any string: WEBSHOCKET_HANDLER is never invalid here
    return any(arg.split("=", 1)[0] in action.option_strings for arg in argv)


# ---------------------------------------------------------------------------------------- checks


def _importable_path(module_name: str) -> str:
    return module_name.replace(".", "/") + ".py"


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno}"


def load_handler(spec: str) -> type[Any]:
    """Import ``"package.module:HandlerClass"`` (the current directory is importable).

    Raises:
        CliError: the module cannot be imported, has no such attribute, or it is not a handler class.
    """
    from .handler import WebSocketHandler

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"HANDLER {spec}: write it as module:Class, e.g. myapp:ChatHandler (ChatHandler in myapp.py)")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise CliError(
                f"cannot import module {module_name!r} (no module named {missing!r}) from the current directory "
                f"{cwd} or PYTHONPATH: run webshocket where {_importable_path(module_name)} can be imported, "
                f"or add its directory to PYTHONPATH (HANDLER is module:Class)"
            ) from None
        raise CliError(
            f"importing module {module_name!r} failed: no module named {missing!r} (imported at {_where(exc)}); "
            f"install it in this environment ({sys.executable})"
        ) from None
    except SyntaxError as exc:
        raise CliError(
            f"module {module_name!r} has a syntax error at {exc.filename}:{exc.lineno}: {exc.msg}; fix the module"
        ) from None
    except Exception as exc:
        raise CliError(
            f"importing module {module_name!r} raised {type(exc).__name__}: {exc} (at {_where(exc)}); "
            f"fix the module (python -c 'import {module_name}' shows the traceback)"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            handlers = sorted(
                name
                for name, value in vars(module).items()
                if isinstance(value, type) and issubclass(value, WebSocketHandler) and value.__module__ == module_name
            )
            there = f"its handler classes: {', '.join(handlers)}" if handlers else "it has no WebSocketHandler subclass"
            message = f"module {module_name!r} has no attribute {attr!r}; {there} (HANDLER is module:Class)"
            raise CliError(message) from None
    if not (isinstance(target, type) and issubclass(target, WebSocketHandler)):
        kind = type(target).__name__
        raise CliError(
            f"HANDLER {spec} is a {kind}, not a webshocket.WebSocketHandler subclass; "
            "name a class deriving from webshocket.WebSocketHandler"
        )
    return target


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKeyError


def ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The server's TLS context for ``--certfile`` / ``--keyfile`` (None: plain ws://).

    Raises:
        CliError: the files are not a PEM certificate chain and its private key.
    """
    if certfile is None:
        if keyfile is not None:
            raise CliError(f"--keyfile {keyfile} needs --certfile: give the certificate chain (PEM) too")
        return None
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_verify_locations(cafile=certfile)
    except (ssl.SSLError, ValueError):
        raise CliError(
            f"--certfile {certfile}: no PEM certificate in it (-----BEGIN CERTIFICATE-----); "
            "give the server's certificate chain in PEM format"
        ) from None
    except OSError as exc:
        raise CliError(f"--certfile {certfile}: cannot read it ({exc.strerror}); give a readable PEM file") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    key_source = keyfile or certfile
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except _EncryptedKeyError:
        raise CliError(
            f"the private key in {key_source} is encrypted; give an unencrypted key "
            f"(openssl pkey -in {key_source} -out key.pem) with --keyfile"
        ) from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise CliError(
                f"--keyfile {key_source} does not match the certificate in --certfile {certfile}; "
                "give that certificate's private key"
            ) from None
        option = "--keyfile" if keyfile else "--certfile"
        raise CliError(
            f"{option} {key_source}: no PEM private key in it (-----BEGIN PRIVATE KEY-----); "
            "give the certificate's private key with --keyfile"
        ) from None
    except OSError as exc:
        raise CliError(f"--keyfile {key_source}: cannot read it ({exc.strerror}); give a readable PEM file") from None
    return context


def _reason(exc: BaseException) -> str:
    """The innermost OS error's text in ``exc``'s chain ("Connection refused"), else ``str(exc)``."""
    seen: BaseException | None = exc
    reason = str(exc)
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            reason = seen.strerror
        elif isinstance(seen, (asyncio.TimeoutError, TimeoutError)):
            reason = "timed out"
        seen = seen.__cause__ or seen.__context__
    return reason


def _redis_down(url: str, exc: BaseException, backplane: Backplane | None = None) -> CliError:
    """The one line for a backplane that cannot be reached (a sharded one's: naming the shard)."""
    from .redis_backplane import _safe_url

    urls = split_urls(url)
    where = ",".join(_safe_url(one) for one in urls)
    failed = getattr(backplane, "unreachable", None)  # ShardedRedisBackplane: the shard that failed
    if len(urls) > 1 and failed in urls:
        where = f"{_safe_url(failed)} (shard {urls.index(failed)} of {len(urls)})"
    return CliError(f"--backplane {where}: cannot reach Redis ({_reason(exc)}); start Redis there or fix the URL")


def _make_backplane(url: str) -> Backplane:
    """The backplane ``--backplane`` names (one Redis URL, or several: sharded)."""
    from .redis_backplane import _safe_url
    from .server import make_backplane

    try:
        backplane = make_backplane(url)
    except ValueError as exc:  # e.g. two shards on one Redis server
        where = ",".join(_safe_url(one) for one in split_urls(url))
        raise CliError(f"--backplane {where}: {exc}") from None
    assert backplane is not None
    return backplane


def check_backplane(url: str) -> None:
    """Connect to the backplane once and disconnect (workers check before forking).

    Raises:
        CliError: it (or one of its shards) cannot be reached.
    """
    from ._loop import run
    from .exceptions import ConnectionFailedError

    backplane = _make_backplane(url)

    async def probe() -> None:
        await backplane.start(lambda envelope, lane=0: None)
        await backplane.close()

    try:
        run(probe())
    except ConnectionFailedError as exc:
        raise _redis_down(url, exc, backplane) from None


def _bind_error(exc: OSError, flag: str, host: str, port: int) -> CliError:
    if isinstance(exc, socket.gaierror):
        return CliError(
            f"--host {host}: cannot resolve it ({exc.strerror}); give an IP address (0.0.0.0: every interface)"
        )
    if exc.errno == errno.EADDRINUSE:
        return CliError(
            f"{flag} {port}: address {host}:{port} already in use; stop what listens there or choose another {flag}"
        )
    if exc.errno == errno.EACCES:
        return CliError(f"{flag} {port}: permission denied; use a port from 1024 up (lower ones need root)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return CliError(f"--host {host}: not an address of this machine; use one of its addresses or 0.0.0.0")
    return CliError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and {flag}")


def configure_logging(level: str | None, config_file: str | None) -> None:
    """Set up logging: ``--log-config`` (dictConfig .json or fileConfig .ini) or ``--log-level``.

    picows's own per-connection lines (loggers ``picows`` and ``webshocket.server.picows``, the one
    the server hands picows) are kept at WARNING: a connection is logged once, by
    ``webshocket.server`` at DEBUG. A configuration file can still name them.

    Raises:
        CliError: the configuration file is not valid.
    """
    for name in ("picows", "webshocket.server.picows"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if config_file is None:
        logging.basicConfig(level=(level or "info").upper(), format=LOG_FORMAT)
        return
    suffix = os.path.splitext(config_file)[1].lower()
    if suffix in (".yaml", ".yml"):
        raise CliError(f"--log-config {config_file}: YAML is not supported; write it as .json (dictConfig) or .ini")
    try:
        if suffix == ".json":
            with open(config_file, encoding="utf-8") as file:
                try:
                    config = json.load(file)
                except json.JSONDecodeError as exc:
                    raise CliError(
                        f"--log-config {config_file}: invalid JSON at line {exc.lineno} column {exc.colno} "
                        f"({exc.msg}); fix the file"
                    ) from None
            if not isinstance(config, dict):
                raise CliError(f"--log-config {config_file}: not a JSON object; write a logging dictConfig object")
            config.setdefault("version", 1)
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        else:
            logging.config.fileConfig(config_file, disable_existing_loggers=False)
    except CliError:
        raise
    except Exception as exc:
        kind = "dictConfig" if suffix == ".json" else "fileConfig (.ini)"
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise CliError(
            f"--log-config {config_file}: not a valid logging {kind} configuration ({detail}); "
            "see https://docs.python.org/3/library/logging.config.html"
        ) from None
    if level is not None:
        logging.getLogger("webshocket").setLevel(level.upper())


# ---------------------------------------------------------------------------------------- serve


class _MetricsOptions:
    """Where the metrics endpoint listens, and how the workers find each other."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host = host
        self.port = port
        self.workers = workers
        self.reserved: socket.socket | None = None  # the port, held by the parent of workers
        self.directory: str | None = None  # the workers' sockets (see metrics.WorkerPeers)


class CliServer(WebSocketServer[Any]):
    """A server that also runs its metrics endpoint (``--metrics-port``) while it serves."""

    def __init__(self, *args: Any, metrics: _MetricsOptions | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics_options = metrics
        self.metrics_endpoint: MetricsEndpoint | None = None

    async def start(self, **kwargs: Any) -> CliServer:
        """Start the metrics endpoint (its port may be taken: then nothing starts), then the server."""
        await self._start_metrics()
        try:
            await super().start(**kwargs)
        except BaseException:
            await self.close(timeout=0)
            raise
        return self

    async def _start_metrics(self) -> None:
        options = self.metrics_options
        if options is not None and self.metrics_endpoint is None:
            from .metrics import MetricsEndpoint, WorkerPeers
            from .workers import current_worker

            peers = None
            index = current_worker()
            if index is not None and options.directory is not None:  # a worker process
                if options.reserved is not None:
                    options.reserved.close()  # the parent's, inherited
                peers = WorkerPeers(options.directory, index, options.workers)
            endpoint = MetricsEndpoint(self, options.host, options.port, peers=peers)
            try:
                await endpoint.start(reuse_port=peers is not None)
            except OSError as exc:
                raise _bind_error(exc, "--metrics-port", options.host, options.port) from None
            self.metrics_endpoint = endpoint

    async def close(self, timeout: float | None = 10.0) -> None:
        try:
            await super().close(timeout)
        finally:
            endpoint, self.metrics_endpoint = self.metrics_endpoint, None
            if endpoint is not None:
                await endpoint.close()


_LIMIT_OPTIONS = (
    "max_connection",
    "max_message_size",
    "max_subscribed_channels",
    "max_send_buffer",
    "slow_consumer_timeout",
    "max_total_send_backlog",
    "handshake_timeout",
    "error_detail",
)
"""Server options the command line passes on when given (their defaults are the server's)."""


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    from .config import ServerConfig

    limits = {name: getattr(args, name) for name in _LIMIT_OPTIONS if getattr(args, name) is not None}
    try:
        ServerConfig(**limits)
    except ValueError as exc:
        message = re.sub(
            r"\b(" + "|".join(_LIMIT_OPTIONS) + r")\b", lambda m: "--" + m.group(1).replace("_", "-"), str(exc)
        )
        raise CliError(f"{message}; change the option") from None
    return limits


def _make_server(args: argparse.Namespace, metrics: _MetricsOptions | None) -> CliServer:
    handler = load_handler(args.handler)
    context = ssl_context(args.certfile, args.keyfile)
    limits = _limits(args)
    if args.allowed_origins is not None:
        limits["allowed_origins"] = args.allowed_origins
    if args.require_origin:
        limits["allow_missing_origin"] = False
    backplane: Backplane | None = None
    if args.backplane is not None:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise CliError(
                f"--backplane {args.backplane} needs the Redis client: pip install 'redis>=5.0.1,<9' "
                f"into this environment ({sys.executable})"
            ) from None
        backplane = _make_backplane(args.backplane)
    try:
        return CliServer(
            args.host,
            args.port,
            clientHandler=handler,
            ssl_context=context,
            backplane=backplane,
            metrics=metrics,
            **limits,
        )
    except Exception as exc:
        raise CliError(
            f"creating the server for {args.handler} raised {type(exc).__name__}: {exc} (at {_where(exc)}); "
            "fix the handler's __init__"
        ) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from .exceptions import ConnectionFailedError
    from .workers import WorkerError, reserve_port, serve_workers

    if args.handler is None:
        raise CliError(
            "HANDLER missing: give the handler class as module:Class (webshocket serve myapp:ChatHandler) "
            f"or set {env_name('handler')}",
            2,
        )
    configure_logging(args.log_level, args.log_config)
    metrics: _MetricsOptions | None = None
    if args.metrics_port is not None:
        if args.metrics_port and args.metrics_port == args.port:
            raise CliError(f"--metrics-port {args.metrics_port} is also --port; choose another port for the metrics")
        metrics = _MetricsOptions(args.metrics_host or args.host, args.metrics_port, args.workers)
    server = _make_server(args, metrics)
    scheme = "wss" if server.ssl_context else "ws"

    def ready(port: int) -> None:
        workers = f" with {args.workers} workers" if args.workers > 1 else ""
        metrics_text = ""
        if metrics is not None:
            endpoint = server.metrics_endpoint
            metrics_port = endpoint.port if endpoint is not None else metrics.port
            metrics_text = f"; metrics on http://{metrics.host}:{metrics_port}/metrics"
        _logger.info("Serving %s on %s://%s:%s (pid %d)", args.handler, scheme, args.host, port, os.getpid())
        if args.workers > 1 and args.backplane is None:
            _logger.warning("%d workers without a backplane: pub/sub stays within each worker", args.workers)
        print(f"webshocket: serving {args.handler} on {scheme}://{args.host}:{port}{workers}{metrics_text}", flush=True)

    try:
        if args.workers == 1:
            server.run(on_ready=ready, graceful_timeout=args.graceful_timeout)
            code = 0
        else:
            if args.backplane is not None:
                check_backplane(args.backplane)
            if metrics is not None:
                try:
                    metrics.reserved = reserve_port(metrics.host, metrics.port)
                except OSError as exc:
                    raise _bind_error(exc, "--metrics-port", metrics.host, metrics.port) from None
                metrics.port = metrics.reserved.getsockname()[1]
                metrics.directory = tempfile.mkdtemp(prefix="webshocket-metrics-")
            code = serve_workers(
                lambda: server,
                args.workers,
                host=args.host,
                port=args.port,
                on_ready=ready,
                shutdown_timeout=args.graceful_timeout,
            )
    except ConnectionFailedError as exc:
        raise _redis_down(args.backplane or "", exc, server.backplane) from None
    except OSError as exc:
        raise _bind_error(exc, "--port", args.host, args.port) from None
    except WorkerError as exc:
        raise CliError(f"{exc}; fix that and start again") from None
    finally:
        if metrics is not None:
            if metrics.reserved is not None:
                metrics.reserved.close()
            if metrics.directory is not None:
                shutil.rmtree(metrics.directory, ignore_errors=True)
    print("webshocket: stopped", flush=True)
    return code


def _cmd_bench(rest: Sequence[str]) -> int:
    """``webshocket bench ...``: the end-to-end suite, shipped in the package (:mod:`webshocket.bench`)."""
    from .bench.run import main as bench_main

    return bench_main(list(rest), prog="webshocket bench")


def _cmd_capacity(rest: Sequence[str]) -> int:
    """``webshocket capacity ...``: the capacity model of docs/scaling.md (:mod:`webshocket.bench.capacity`)."""
    from .bench.capacity import main as capacity_main

    return capacity_main(list(rest))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``webshocket`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            return _cmd_bench(argv[1:])
        if argv[:1] == ["capacity"]:
            return _cmd_capacity(argv[1:])
        parser = build_parser()
        env_errors = apply_environment(parser, os.environ if environ is None else environ)
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            raise CliError(f"unrecognized arguments: {' '.join(unknown)} (see 'webshocket {args.command} --help')", 2)
        if args.command == "serve":
            for action, error in env_errors:
                if not _given(action, argv):
                    raise error
            return _cmd_serve(args)
        return 2  # pragma: no cover - argparse rejects unknown commands
    except CliError as exc:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        print(f"webshocket: error: {exc}", file=sys.stderr, flush=True)
        return exc.status
