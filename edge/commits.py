"""Learn what the chain committed, so the outbox can forget tx messages (`keep_tx_until`).

A PUBACK only says the broker took a message; a broker may still drop it before any
validator sees it (DESIGN.md). With `keep_tx_until = "committed"` the outbox keeps every
acknowledged `tx` message, and this watcher asks a validator's API, every `[hub] poll_s`
while such messages wait, for the gateway's account: its `seq` is the last committed seq of
the gateway's tx stream (a transaction that reached execution consumes its seq whatever its
outcome). Everything at or below it leaves the outbox. What the answer shows uncommitted
is late: it goes out again ahead of the next new tx message (`Outbox.store`), and all that
waits is re-sent after `republish_s` (`Outbox.republish_overdue`), always in seq order.

A gateway installed before its registration has its reads refused until the `register`
transaction commits. The answer's `registered` tells when that happened: the late tail goes
out again at once, in seq order, rather than with the next new tx message (up to one
interval later). The validators hold a read behind one they refused as unregistered until
that one comes again (hub/mempool.py), so a re-send that straddled the registration loses
nothing; this makes the wait short.

`read_account` is the pure part (bytes of the answer in, seq and registration out);
`fetch_account` does one blocking HTTP GET; `CommitWatcher` is the asyncio loop. The hub
being unreachable or answering nonsense is logged and retried; it never stops the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import HubSettings
from edge.errors import EdgeError
from edge.outbox import OutboxThread

log = logging.getLogger("gtx.edge.commits")

MAX_ANSWER_BYTES = 64 * 1024
"""An account answer is a few hundred bytes; more is not an account."""


class HubAnswerError(EdgeError):
    """The hub could not be asked, or its answer is not an account of this gateway."""


def account_url(hub_url: str, gateway: str) -> str:
    """`GET` URL of the gateway's account on a validator's API."""
    return f"{hub_url}/v1/accounts/{gateway}"


@dataclass(frozen=True, slots=True)
class AccountAnswer:
    """What the hub says about this gateway."""

    seq: int
    """The last committed seq of its tx stream (0: nothing committed yet)."""
    registered: bool | None
    """Whether it is a registered gateway; None from a hub that does not say."""


def read_account(answer: bytes, gateway: str) -> AccountAnswer:
    """The body of `GET /v1/accounts/{gateway}` (pure).

    Raises:
        HubAnswerError: not JSON, another account, no non-negative integer `seq`, or a
            `registered` that is not a boolean.
    """
    try:
        obj = json.loads(answer)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HubAnswerError(f"account answer is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise HubAnswerError("account answer is not a JSON object")
    if obj.get("account") != gateway:
        raise HubAnswerError(f"account answer is for {str(obj.get('account'))[:16]!r}, not us")
    seq = obj.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise HubAnswerError(f"account answer has no committed seq (seq = {seq!r})")
    registered = obj.get("registered")
    if registered is not None and not isinstance(registered, bool):
        raise HubAnswerError(f"account answer has a bad registered = {registered!r}")
    return AccountAnswer(seq, registered)


def tls_context(hub: HubSettings) -> ssl.SSLContext | None:
    """The TLS context for an https hub (its CA file, or the system's), None for http."""
    return ssl.create_default_context(cafile=hub.ca) if hub.url.startswith("https:") else None


def fetch_account(
    hub: HubSettings, gateway: str, context: ssl.SSLContext | None = None
) -> AccountAnswer:
    """Ask the hub once (blocking; run it in a thread).

    Args:
        hub: where to ask.
        gateway: the gateway's public key.
        context: `tls_context(hub)`, made once by the caller (it reads the CA file).

    Raises:
        HubAnswerError: unreachable, an HTTP error, a timeout or a bad answer.
    """
    url = account_url(hub.url, gateway)
    try:
        # The scheme is http or https: the config refuses any other.
        with urllib.request.urlopen(  # noqa: S310
            url, timeout=hub.timeout_ms / 1000, context=context
        ) as response:
            body: bytes = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection; unclosed, the socket lingers until collected
        raise HubAnswerError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise HubAnswerError(f"{url}: {reason}") from exc
    if len(body) > MAX_ANSWER_BYTES:
        raise HubAnswerError(f"{url}: answer larger than {MAX_ANSWER_BYTES} bytes")
    return read_account(body, gateway)


class CommitWatcher:
    """Feeds the outbox the chain's committed tx seq while tx messages wait for it."""

    def __init__(
        self,
        hub: HubSettings,
        gateway: str,
        store: OutboxThread,
        fetch: Callable[[HubSettings, str, ssl.SSLContext | None], AccountAnswer] = fetch_account,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        """Watch for `gateway` on `hub`.

        `fetch` is the one blocking question; `wake` tells the uplink that messages wait
        (after a re-send is marked).
        """
        self.clock = clock
        self.wake = wake
        self.hub = hub
        self.gateway = gateway
        self.store = store
        self.fetch = fetch
        self.context = tls_context(hub)
        self.committed: int | None = store.outbox.committed("tx")
        """The last committed seq learned (also from earlier runs), None before any."""
        self.forgotten = 0
        """tx messages that left the outbox because the chain committed them."""
        self.errors = 0
        """Questions that failed."""
        self.last_error: str | None = None
        """The last failure, None after a success."""
        self.registered: bool | None = None
        """Whether the hub last said this gateway is registered; None before it said."""
        self.resent_on_registration = False
        """Whether this run re-sent the refused tail for the registration (once a run: a
        hub behind a load balancer may answer False again for a while)."""

    async def run(self) -> None:
        """Ask every `poll_s` while acknowledged tx messages wait; forever."""
        while True:
            if await self.store.call(self.store.outbox.awaiting_commit):
                await self.check()
            await asyncio.sleep(self.hub.poll_s)

    async def check(self) -> int:
        """Ask once and let the outbox forget what committed.

        Returns:
            How many messages left the outbox (0 also when the hub could not be asked).
        """
        asked_ms = self.clock()
        try:
            answer = await asyncio.to_thread(self.fetch, self.hub, self.gateway, self.context)
        except HubAnswerError as exc:
            self.errors += 1
            if self.last_error is None:
                log.warning(
                    "cannot learn committed transactions: %s; tx messages stay in the "
                    "outbox and are re-sent; check [hub] url",
                    exc,
                )
            self.last_error = str(exc)
            return 0
        seq = answer.seq
        if self.last_error is not None:
            log.info("hub answers again: committed tx seq %d", seq)
        self.last_error = None
        self.committed = seq if self.committed is None else max(self.committed, seq)
        gone = await self.store.call(self.store.outbox.commit_through, "tx", seq, asked_ms)
        self.forgotten += gone
        if gone:
            log.debug("chain committed tx seq %d: %d messages left the outbox", seq, gone)
        # Registered since the last answer (or, at start, with nothing committed yet): what
        # the hub refused while it did not know the gateway goes out again now.
        newly = (
            answer.registered
            and not self.resent_on_registration
            and (self.registered is False or (self.registered is None and seq == 0))
        )
        self.registered = answer.registered
        if newly:
            self.resent_on_registration = True
            again = await self.store.call(self.store.outbox.resend_late)
            if again:
                self.wake()
                log.info(
                    "the hub knows this gateway now: %d waiting tx messages go out again", again
                )
        return gone
