"""Moved to `gatedrnn.nn.lm`; this alias keeps `import gatedrnn.lm` working."""

from gatedrnn.nn.lm import *  # noqa: F401,F403
