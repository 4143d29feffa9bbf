"""Moved to `gatedrnn.nn.ctc`; this alias keeps `import gatedrnn.ctc` working."""

from gatedrnn.nn.ctc import *  # noqa: F401,F403
