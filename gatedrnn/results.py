"""Moved to `gatedrnn.lab.results`; this alias keeps `import gatedrnn.results` working."""

from gatedrnn.lab.results import *  # noqa: F401,F403
