"""Experiment scripts: thin entry points over `gatedrnn.train`."""
