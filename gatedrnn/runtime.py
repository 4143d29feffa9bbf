"""Moved to `gatedrnn.lab.runtime`; this alias keeps `import gatedrnn.runtime` working."""

from gatedrnn.lab.runtime import *  # noqa: F401,F403
