"""Imported first by every script job: makes the hwlab package beside scripts/ importable
whether or not it is installed (and this checkout's copy win over an installed one)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
