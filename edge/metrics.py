"""The Prometheus endpoint: a tiny asyncio HTTP/1.0 server answering `GET /metrics`.

No dependency: the exposition text comes from `edge.status.render_metrics`; this module only
speaks enough HTTP for a Prometheus scraper or curl. Bind it to loopback or a management
network; it has no authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("gtx.edge.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A complete HTTP/1.0 response (pure)."""
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def answer(request_line: str, render: Callable[[], str]) -> bytes:
    """The response to one request line such as `GET /metrics HTTP/1.1` (pure but `render`)."""
    parts = request_line.split()
    if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
        return response("405 Method Not Allowed", b"only GET /metrics\n")
    path = parts[1].split("?", 1)[0]
    if path not in ("/metrics", "/"):
        return response("404 Not Found", b"try /metrics\n")
    body = render().encode("utf-8")
    full = response("200 OK", body, CONTENT_TYPE)
    return full[: len(full) - len(body)] if parts[0] == "HEAD" else full


async def serve_metrics(host: str, port: int, render: Callable[[], str]) -> asyncio.Server:
    """Start serving `render()` at http://host:port/metrics.

    Raises:
        OSError: the address is in use or cannot be bound.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            total = len(line)
            while total < MAX_REQUEST_BYTES:  # skip headers up to the blank line
                header = await asyncio.wait_for(reader.readline(), timeout=5.0)
                total += len(header)
                if header in (b"\r\n", b"\n", b""):
                    break
            writer.write(answer(line.decode("latin-1"), render))
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.debug("metrics client: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    log.info("metrics at http://%s:%d/metrics", host, port)
    return server
