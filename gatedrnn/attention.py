"""Moved to `gatedrnn.nn.attention`; this alias keeps `import gatedrnn.attention` working."""

from gatedrnn.nn.attention import *  # noqa: F401,F403
