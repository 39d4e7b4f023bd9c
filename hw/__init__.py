"""Hardware: device profiles, pure register decoders, SunSpec discovery, simulated devices."""
