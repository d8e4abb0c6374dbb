"""Command line: ``webshocket serve module:Handler`` (like uvicorn) and ``webshocket bench``.

Also reachable as ``python -m webshocket``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .constant import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["load_handler", "main"]

_logger = logging.getLogger("webshocket.cli")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def load_handler(spec: str) -> type[Any]:
    """Import ``"package.module:HandlerClass"`` (the current directory is importable)."""
    from .handler import WebSocketHandler

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: handler must look like 'module:HandlerClass', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: cannot import module {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SystemExit(f"error: module {module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(target, type) and issubclass(target, WebSocketHandler)):
        raise SystemExit(f"error: {spec!r} is not a webshocket.WebSocketHandler subclass")
    return target


def _ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if certfile is None:
        if keyfile is not None:
            raise SystemExit("error: --keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def _server_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "clientHandler": load_handler(args.handler),
        "ssl_context": _ssl_context(args.certfile, args.keyfile),
        "max_connection": args.max_connection,
        "max_message_size": args.max_message_size,
        "backplane": args.backplane,
    }
    if args.max_subscribed_channels is not None:
        kwargs["max_subscribed_channels"] = args.max_subscribed_channels
    for name in _LIMIT_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


_LIMIT_OPTIONS = (
    "max_send_buffer",
    "slow_consumer_timeout",
    "max_total_send_backlog",
    "handshake_timeout",
    "error_detail",
)
"""Server options the command line passes on when given (their defaults are the server's)."""


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import WebSocketServer
    from .workers import WorkerError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = WebSocketServer(args.host, args.port, workers=args.workers, **_server_kwargs(args))
    scheme = "wss" if server.ssl_context else "ws"

    def ready(port: int) -> None:
        workers = f" with {args.workers} workers" if args.workers > 1 else ""
        _logger.info("Serving %s on %s://%s:%s (pid %d)", args.handler, scheme, args.host, port, os.getpid())
        print(f"webshocket: serving {args.handler} on {scheme}://{args.host}:{port}{workers}", flush=True)

    try:
        code = server.run(on_ready=ready, graceful_timeout=args.graceful_timeout)
    except (WorkerError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print("webshocket: stopped", flush=True)
    return code


def _cmd_bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "benchmarks", "e2e")):
        raise SystemExit("error: the benchmark suite lives in the source tree (benchmarks/e2e); run from a clone")
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.e2e.run import main as bench_main

    return int(bench_main(list(rest)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webshocket",
        description="Webshocket: RPC, streaming and pub/sub over WebSockets.",
    )
    parser.add_argument("--version", action="version", version=f"webshocket {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run a server for a handler class",
        description="Run a WebSocket server for HANDLER until Ctrl-C (SIGINT) or SIGTERM.",
        epilog="example: webshocket serve examples.chat:ChatHandler --port 8765 --workers 2 "
        "--backplane redis://127.0.0.1:6379/0",
    )
    serve.add_argument("handler", metavar="HANDLER", help="the WebSocketHandler subclass, as module:Class")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8765, help="port to bind, 0 for any free one (default: %(default)s)")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT) (default: %(default)s)"
    )
    serve.add_argument("--backplane", default=None, metavar="URL", help="scale-out backplane, e.g. redis://host:6379/0")
    serve.add_argument("--certfile", default=None, help="TLS certificate chain (PEM): serve wss://")
    serve.add_argument("--keyfile", default=None, help="TLS private key (PEM), if not in --certfile")
    serve.add_argument("--max-connection", type=int, default=None, help="refuse clients beyond this many")
    serve.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest message in bytes (default: %(default)s)",
    )
    serve.add_argument("--max-subscribed-channels", type=int, default=None, help="subscriptions per connection")
    serve.add_argument(
        "--max-send-buffer", type=int, default=None, help="bytes waiting per connection before backpressure"
    )
    serve.add_argument(
        "--slow-consumer-timeout", type=float, default=None, help="seconds a backlogged connection is kept (default: 5)"
    )
    serve.add_argument(
        "--max-total-send-backlog", type=int, default=None, help="bytes held for all connections together"
    )
    serve.add_argument(
        "--handshake-timeout",
        type=float,
        default=None,
        help="seconds for the TLS and WebSocket handshakes (default: 5)",
    )
    serve.add_argument(
        "--error-detail",
        choices=("full", "minimal"),
        default=None,
        help="what clients learn of unexpected errors: full (0.5.x) or minimal (type and reference id)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds RPCs get to finish at shutdown (default: %(default)s)",
    )
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="logging level (default: %(default)s)")

    commands.add_parser(
        "bench",
        help="run the end-to-end benchmark suite (arguments are passed on; try 'bench --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``webshocket`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _cmd_bench(argparse.Namespace(), argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        if args.workers < 1:
            raise SystemExit("error: --workers must be at least 1")
        return _cmd_serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands
