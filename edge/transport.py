"""Where a device is reached: one `Transport` type and one parser for its URL.

The gateway config (`transport = "..."`), `gtx edge read|scan` and the Modbus client all
read the same three forms:

- `tcp://HOST[:PORT]`: Modbus TCP (port 502 when left out);
- `rtu:///dev/ttyX?baud=9600&parity=N[&stopbits=1]`: Modbus RTU on a serial port (a bare
  `/dev/ttyX` path is taken as `rtu://` with the defaults);
- `iec61850://HOST[:PORT]/LDNAME`: an IEC 61850 MMS server (port 102 when left out).

Errors are `ConfigError`s whose text quotes the URL and says what is expected; callers
prefix it with where the URL came from (a config key, a command-line option).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from edge.errors import ConfigError

TransportKind = Literal["tcp", "rtu", "iec61850"]
Parity = Literal["N", "E", "O"]

BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
"""The RS-485 bit rates meters and inverters offer."""

MODBUS_TCP_PORT = 502
MMS_PORT = 102
FORMS = "tcp://HOST:PORT, rtu:///dev/ttyX?baud=9600&parity=N or iec61850://HOST:PORT/LDNAME"
_LD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,64}")
_RTU_OPTIONS = ("baud", "parity", "stopbits")


@dataclass(frozen=True, slots=True)
class Transport:
    """Where a device is reached; devices on the same `bus` share one scheduler."""

    kind: TransportKind
    """`tcp` (Modbus TCP), `rtu` (Modbus RTU on a serial port) or `iec61850` (MMS)."""
    host: str = ""
    """TCP host (tcp, iec61850)."""
    port: int = MODBUS_TCP_PORT
    """TCP port (tcp, iec61850)."""
    path: str = ""
    """Serial device (rtu), e.g. `/dev/ttyAMA0`."""
    baud: int = 9600
    """Serial bit rate (rtu)."""
    parity: Parity = "N"
    """Serial parity N, E or O (rtu)."""
    stopbits: int = 1
    """Serial stop bits, 1 or 2 (rtu)."""
    ld_name: str = ""
    """IEC 61850 logical device name (iec61850)."""

    @property
    def bus(self) -> str:
        """Identity of the physical bus: one request at a time per bus."""
        if self.kind == "rtu":
            return f"rtu:{self.path}"
        return f"{self.kind}:{self.host}:{self.port}"

    def describe(self) -> str:
        """Short human form: `tcp 10.0.0.5:502`, `rtu /dev/ttyUSB0`, `iec61850 host:102/LD`."""
        if self.kind == "rtu":
            return f"rtu {self.path}"
        if self.kind == "iec61850":
            return f"iec61850 {self.host}:{self.port}/{self.ld_name}"
        return f"tcp {self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The transport as a URL `parse_transport` reads back to an equal value."""
        if self.kind == "tcp":
            return f"tcp://{self.host}:{self.port}"
        if self.kind == "iec61850":
            return f"iec61850://{self.host}:{self.port}/{self.ld_name}"
        stop = f"&stopbits={self.stopbits}" if self.stopbits != 1 else ""
        return f"rtu://{self.path}?baud={self.baud}&parity={self.parity}{stop}"


def parse_transport(text: str, *, baud: int | None = None, parity: str | None = None) -> Transport:
    """Parse a transport URL (see the module text for the three forms).

    Args:
        text: the URL; a bare absolute path means a serial port with default settings.
        baud: serial bit rate, overriding the URL's (the `--baud` option).
        parity: serial parity N, E or O in either case, overriding the URL's (`--parity`).

    Raises:
        ConfigError: not one of the forms; the text quotes `text` and says what is expected.
    """
    url_text = f"rtu://{text}" if text.startswith("/") else text
    try:
        url = urlsplit(url_text)
        port = url.port
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a transport URL ({exc}); expected {FORMS}") from exc
    if url.scheme == "tcp":
        if not url.hostname:
            raise ConfigError(f"{text!r} is missing the host; expected tcp://HOST:PORT")
        if port == 0 or url.path not in ("", "/") or url.query:
            raise ConfigError(f"{text!r}: expected tcp://HOST:PORT")
        return Transport("tcp", host=url.hostname, port=port or MODBUS_TCP_PORT)
    if url.scheme == "iec61850":
        ld = url.path.strip("/")
        if not url.hostname or not _LD.fullmatch(ld) or port == 0:
            raise ConfigError(f"{text!r}: expected iec61850://HOST:PORT/LDNAME")
        return Transport("iec61850", host=url.hostname, port=port or MMS_PORT, ld_name=ld)
    if url.scheme == "rtu":
        return _rtu(text, url.netloc, unquote(url.path), url.query, baud, parity)
    raise ConfigError(f"{text!r} has unknown scheme {url.scheme!r}; expected {FORMS}")


def _rtu(
    text: str, netloc: str, path: str, query_text: str, baud: int | None, parity: str | None
) -> Transport:
    if netloc or not path.startswith("/"):
        raise ConfigError(
            f"{text!r}: expected rtu:///dev/ttyX?baud=9600&parity=N (three slashes, then "
            "the serial device's absolute path)"
        )
    query = {k: v[-1] for k, v in parse_qs(query_text).items()}
    unknown = sorted(set(query) - set(_RTU_OPTIONS))
    if unknown:
        raise ConfigError(
            f"{text!r}: unknown option {unknown[0]!r}; options: {', '.join(_RTU_OPTIONS)}"
        )
    rate_text = str(baud) if baud is not None else query.get("baud", "9600")
    if not rate_text.isdigit() or int(rate_text) not in BAUDS:
        raise ConfigError(
            f"{text!r}: baud must be one of {', '.join(map(str, BAUDS))}, got {rate_text!r}"
        )
    par = (parity if parity is not None else query.get("parity", "N")).upper()
    if par not in ("N", "E", "O"):
        raise ConfigError(f"{text!r}: parity must be N, E or O, got {par!r}")
    stop = query.get("stopbits", "1")
    if stop not in ("1", "2"):
        raise ConfigError(f"{text!r}: stopbits must be 1 or 2, got {stop!r}")
    return Transport(
        "rtu",
        path=path,
        baud=int(rate_text),
        parity="E" if par == "E" else "O" if par == "O" else "N",
        stopbits=int(stop),
    )
