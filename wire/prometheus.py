"""Prometheus text exposition (format 0.0.4), as the gateway and the validators serve it. Pure.

Both render their own status into metric families with these two helpers, so label values
are escaped one way (backslash, double quote and newline, as the format asks).
"""

from __future__ import annotations

__all__ = ["family", "labels"]


def labels(**values: str) -> str:
    """`{k="v",...}` with the values escaped."""

    def escaped(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escaped(v)}"' for k, v in values.items()) + "}"


def family(name: str, kind: str, help_text: str, samples: list[tuple[str, str]]) -> list[str]:
    """The lines of one metric family: HELP, TYPE, then `name{labels} value` per sample."""
    return [
        f"# HELP {name} {help_text}",
        f"# TYPE {name} {kind}",
        *(f"{name}{sample_labels} {value}" for sample_labels, value in samples),
    ]
