"""Moved to `gatedrnn.nn.encoder`; this alias keeps `import gatedrnn.encoder` working."""

from gatedrnn.nn.encoder import *  # noqa: F401,F403
