"""Regenerate tests/vectors/messages.json (run only when the contract changes on purpose).

    .venv/bin/python tests/vectors/make_vectors.py

Keys are derived from fixed seeds, so the file is reproducible byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from nacl.signing import SigningKey

from wire import envelope, kinds
from wire.struct import Body

SEED = bytes(range(32))
CHAIN = "gtx-vectors"
TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
OUT = Path(__file__).with_name("messages.json")


def sample_bodies() -> list[Body]:
    """One body of every kind, with realistic values."""
    gw = "1" * 64
    owner = "2" * 64
    return [
        kinds.Telemetry(
            device="meter1",
            power_w=-3250,
            voltage_dv=2304,
            frequency_mhz=49_987,
            import_wh=1_234_567,
            export_wh=765_432,
        ),
        kinds.MeterRead(
            device="meter1",
            interval=TS,
            import_wh=1_234_567,
            export_wh=765_432,
            source="solar",
            prev="0" * 64,
        ),
        kinds.Offer(
            interval=TS + 900_000,
            energy_wh=1500,
            price=350,
            source="solar",
            zone="pea/ayutthaya/sub-01/feeder-3",
            expires=TS + 600_000,
        ),
        kinds.Bid(
            interval=TS + 900_000,
            energy_wh=2000,
            price=420,
            sources=("solar", "wind"),
            zone="pea/ayutthaya/sub-01/feeder-2",
            expires=TS + 600_000,
        ),
        kinds.Cancel(order="ab" * 32),
        kinds.Transfer(to=owner, amount=10_000),
        kinds.Register(
            gateway=gw,
            owner=owner,
            zone="pea/ayutthaya/sub-01/feeder-3",
            devices=(
                kinds.DeviceEntry(name="meter1", source="grid", capacity_w=15_000),
                kinds.DeviceEntry(name="inv1", source="solar", capacity_w=5_000),
            ),
        ),
        kinds.Proposal(
            action="param_change",
            target="wheeling_fee",
            value=45,
            roles=(),
            note="ค่าผ่านสาย 0.45 THB/kWh",
        ),
        kinds.Vote(proposal="cd" * 32, yes=True),
        kinds.Command(
            scope="zone",
            target="pea/ayutthaya/sub-01",
            action="curtail_pct",
            value=40,
            valid_until=TS + 3_600_000,
        ),
        kinds.CertTransfer(cert="cert:42:00000001", to=owner, energy_wh=1200),
        kinds.Claim(cert="cert:42:00000001", energy_wh=300, beneficiary="Wat Arun solar pledge"),
        kinds.ZonePrice(
            zone="pea/ayutthaya/sub-01", interval=TS + 900_000, price=312, energy_wh=4200, height=77
        ),
    ]


def build() -> dict[str, object]:
    """The vector document."""
    key = SigningKey(SEED)
    vectors = []
    for seq, body in enumerate(sample_bodies(), start=1):
        env = envelope.sign(key, CHAIN, body, seq, TS + seq)
        vectors.append(
            {
                "kind": body.KIND,
                "signing_bytes_hex": envelope.signing_bytes(env.unsigned_obj()).hex(),
                "message": env.to_bytes().decode("utf-8"),
                "id": env.message_id(),
            }
        )
    return {
        "about": "GridTokenX v1 golden vectors: Ed25519 seed 000102..1f, see docs/protocol.md",
        "seed_hex": SEED.hex(),
        "public_key": key.verify_key.encode().hex(),
        "chain": CHAIN,
        "vectors": vectors,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
