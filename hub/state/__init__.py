"""The hub's deterministic state machine, behind `EnergyApp` (a consensus `Application`).

Accounts, registry, meters, market, settlement, certificates and governance.

Pure: nothing here reads the clock, the network or the disk; block time comes from the
block context. See docs/market.md.
"""

from hub.state.app import EnergyApp

__all__ = ["EnergyApp"]
