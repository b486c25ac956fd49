"""Tests run the core interpreted (CMASIM_JIT=0) unless they start a compiled subprocess.

The environment variable must be set before cmasim.mm.jit is first imported.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("CMASIM_JIT", "0")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"  # real-kernel traces and oracle records, see data/README.md
sys.path.insert(0, str(ROOT))
