"""Experiment scripts: thin entry points (absl flags, one call) over `gatedrnn.train` and `gatedrnn.lab`."""
