"""Moved to `gatedrnn.nn.regularization`; this alias keeps `import gatedrnn.regularization` working."""

from gatedrnn.nn.regularization import *  # noqa: F401,F403
