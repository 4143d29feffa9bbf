"""Moved to `gatedrnn.nn.heads`; this alias keeps `import gatedrnn.heads` working."""

from gatedrnn.nn.heads import *  # noqa: F401,F403
