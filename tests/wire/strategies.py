"""Hypothesis strategies for valid message bodies of every kind."""

from __future__ import annotations

from hypothesis import strategies as st

from wire import kinds
from wire.struct import Body

hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
device = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
seg = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,7}", fullmatch=True)
zone = st.lists(seg, min_size=1, max_size=4).map("/".join)
source = st.sampled_from(kinds.SOURCES)
ms = st.integers(0, 2**53)
wh = st.integers(0, 2**53)
price = st.integers(0, kinds.MAX_PRICE)

bodies: st.SearchStrategy[Body] = st.one_of(
    st.builds(
        kinds.Telemetry,
        device=device,
        power_w=st.integers(-10_000_000, 10_000_000),
        voltage_dv=st.integers(0, 10_000),
        frequency_mhz=st.integers(0, 70_000),
        import_wh=wh,
        export_wh=wh,
    ),
    st.builds(
        kinds.MeterRead,
        device=device,
        interval=ms,
        import_wh=wh,
        export_wh=wh,
        source=source,
        prev=hex64,
    ),
    st.builds(
        kinds.Offer,
        interval=ms,
        energy_wh=st.integers(1, 2**53),
        price=price,
        source=source,
        zone=zone,
        expires=ms,
    ),
    st.builds(
        kinds.Bid,
        interval=ms,
        energy_wh=st.integers(1, 2**53),
        price=price,
        sources=st.lists(source, min_size=1, unique=True).map(tuple),
        zone=zone,
        expires=ms,
    ),
    st.builds(kinds.Cancel, order=hex64),
    st.builds(kinds.Transfer, to=hex64, amount=st.integers(1, 2**62)),
    st.builds(
        kinds.Register,
        gateway=hex64,
        owner=hex64,
        zone=zone,
        devices=st.lists(
            st.builds(
                kinds.DeviceEntry,
                name=device,
                source=source,
                capacity_w=st.integers(0, kinds.MAX_POWER_W),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda d: d.name,
        ).map(tuple),
    ),
    st.builds(
        kinds.Proposal,
        action=st.just("param_change"),
        target=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
        value=st.integers(-(2**62), 2**62),
        roles=st.just(()),
        note=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=40),
    ),
    st.builds(kinds.Vote, proposal=hex64, yes=st.booleans()),
    st.builds(
        kinds.CertTransfer,
        cert=st.integers(0, 10**16 - 1).map(lambda n: f"cert:{n}:00000001") | hex64,
        to=hex64,
        energy_wh=st.integers(1, 2**53),
    ),
    st.builds(
        kinds.Claim,
        cert=hex64,
        energy_wh=st.integers(1, 2**53),
        beneficiary=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=40),
    ),
    st.builds(
        kinds.Command,
        scope=st.just("zone"),
        target=zone,
        action=st.just("curtail_pct"),
        value=st.integers(0, 100),
        valid_until=ms,
    ),
)
