"""Simulated devices: physics-driven meters and inverters served over Modbus TCP and RTU.

Start one from tests with an async context manager:

    async with serve_tcp(load_profile("sdm630"), units=(1, 2)) as sim:
        reading = await read_measurements(sim.url, profile, 1)

    async with serve_rtu(profile, tmp_path / "ttyS0", units=range(1, 9), baud=9600) as rtu:
        ...  # open rtu.link_path like /dev/ttyUSB0
"""

from hw.sim.device import Fault, SimulatedDevice, Site
from hw.sim.encoding import EncodeError, encode_point, encode_profile
from hw.sim.rtu import RtuSimulator, serve_rtu
from hw.sim.tcp import TcpSimulator, serve_tcp

__all__ = [
    "EncodeError",
    "Fault",
    "RtuSimulator",
    "SimulatedDevice",
    "Site",
    "TcpSimulator",
    "encode_point",
    "encode_profile",
    "serve_rtu",
    "serve_tcp",
]
