"""The scale-out example (two nodes through a real redis-server) runs and delivers across nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from redis_server import redis_available

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scale_out.py"


def test_scale_out_example_runs() -> None:
    assert redis_available(), "redis-server is not installed (scripts/install.sh installs it)"
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "bob   (node B) got: {'from': 'alice', 'text': 'hello from node A'}" in proc.stdout
    assert "alice got a broadcast from node B: maintenance at noon" in proc.stdout
