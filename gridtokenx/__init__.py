"""GridTokenX: the `gtx` command that ties the gateway, the hub and the simulators together."""

__version__ = "0.1.0"
