"""The chaos soak (issue 21, item 6): mixed load on a whole stack while faults are injected at
random, then the invariants. `python -m tests.soak` runs it (docs/soak.md);
tests/integration/test_chaos_soak.py is CI's two-minute version."""
from tests.soak.config import SoakConfig
from tests.soak.run import SoakResult, run_soak

__all__ = ["SoakConfig", "SoakResult", "run_soak"]
