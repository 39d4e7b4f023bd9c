"""systemd integration without a dependency: sd_notify datagrams and the watchdog decision.

`notify` writes `READY=1`, `WATCHDOG=1`, `STATUS=...` or `STOPPING=1` to the datagram socket
named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), as
`sd_notify(3)` does. Outside systemd (no variable) it does nothing.

The watchdog is pinged only while the poll loop is healthy (`polling_healthy`): every bus
has finished a poll recently. A wedged bus stops the pings and systemd restarts the unit.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify message; True if it was sent.

    Args:
        message: e.g. `READY=1` or `WATCHDOG=1`, several separated by newlines.
        environ: the environment to read `NOTIFY_SOCKET` from (default `os.environ`).
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_period_ms(environ: Mapping[str, str] | None = None) -> int | None:
    """How often to ping: half of `$WATCHDOG_USEC`, or None when no watchdog is set.

    `$WATCHDOG_PID`, when set, must be this process (systemd's rule).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return max(1, int(usec) // 2000)


def polling_healthy(last_activity_ms: Mapping[str, int], now_ms: int, limit_ms: int) -> bool:
    """Whether every bus finished a poll within `limit_ms` (pure)."""
    return all(now_ms - t <= limit_ms for t in last_activity_ms.values())
