"""Moved to `gatedrnn.nn.seq2seq`; this alias keeps `import gatedrnn.seq2seq` working."""

from gatedrnn.nn.seq2seq import *  # noqa: F401,F403
