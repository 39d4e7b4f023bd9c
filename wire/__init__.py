"""The shared contract between gateways and validators: canonical encoding, keys, signed messages.

`wire` imports neither `edge` nor `hub`; both import it. docs/protocol.md is its prose twin.
"""
