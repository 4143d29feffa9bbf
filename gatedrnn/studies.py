"""Moved to `gatedrnn.lab.studies`; this alias keeps `import gatedrnn.studies` working."""

from gatedrnn.lab.studies import *  # noqa: F401,F403
