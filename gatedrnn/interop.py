"""Moved to `gatedrnn.nn.interop`; this alias keeps `import gatedrnn.interop` working."""

from gatedrnn.nn.interop import *  # noqa: F401,F403
