"""The Prometheus text helpers the gateway and the validators share."""

from __future__ import annotations

from wire.prometheus import family, labels


def test_label_values_are_escaped_as_the_format_asks() -> None:
    assert labels(device="m1", kind="x") == '{device="m1",kind="x"}'
    assert labels(device='a\\b"c\nd') == '{device="a\\\\b\\"c\\nd"}'


def test_a_family_is_help_type_then_one_line_per_sample() -> None:
    assert family("gtx_x_total", "counter", "Things.", [("", "3"), (labels(a="1"), "4")]) == [
        "# HELP gtx_x_total Things.",
        "# TYPE gtx_x_total counter",
        "gtx_x_total 3",
        'gtx_x_total{a="1"} 4',
    ]
