"""Edge gateway firmware: read devices, sign, buffer durably, publish over MQTT."""
