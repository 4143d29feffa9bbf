"""Moved to `gatedrnn.nn.layers`; this alias keeps `import gatedrnn.layers` working."""

from gatedrnn.nn.layers import *  # noqa: F401,F403
