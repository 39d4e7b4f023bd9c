"""Errors raised by the gateway. `EdgeError` is the root; families below it carry typed fields."""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(EdgeError):
    """The configuration is invalid; the message names the key and the fix."""


class DeviceError(EdgeError):
    """A device could not be read.

    Attributes:
        device: human description of the device (name, profile, transport, unit).
    """

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"{device}: {reason}")
        self.device = device
        self.reason = reason


class DeviceTimeout(DeviceError):
    """The device did not answer in time (wiring, unit id, baud rate, or powered off)."""


class DeviceUnreachable(DeviceError):
    """The transport could not be opened (TCP connect refused, serial port missing)."""


class ModbusException(DeviceError):
    """The device answered with a Modbus exception code."""

    def __init__(self, device: str, reason: str, code: int) -> None:
        super().__init__(device, reason)
        self.code = code


class FrameError(DeviceError):
    """The answer was corrupt: CRC error, wrong length, or garbage on the line."""


class ImplausibleReading(DeviceError):
    """The device answered, but a value is outside its physical range or went backwards."""
