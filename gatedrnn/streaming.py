"""Moved to `gatedrnn.nn.streaming`; this alias keeps `import gatedrnn.streaming` working."""

from gatedrnn.nn.streaming import *  # noqa: F401,F403
