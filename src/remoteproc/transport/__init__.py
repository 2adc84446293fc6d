"""Transports shared by the host's platform drivers and the remotes written in Python."""
