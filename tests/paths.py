"""Paths the tests share: the repository root, whatever folder a test lives in."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
