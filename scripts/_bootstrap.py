"""Make ``workflow/image_batch`` importable from the scripts in this folder."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
