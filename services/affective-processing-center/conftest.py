"""Make ``import affective_processing_center`` work when pytest runs from the repository root."""

import sys
import warnings
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# starlette 0.47.3's test client evaluates ``anyio.abc.BlockingPortal`` in annotations at import time,
# which newer anyio (>= 4.11) reports as a deprecated alias. That is a test-only third-party issue, so
# import the test client once here with exactly that warning silenced; every other warning stays an error.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"The anyio\.abc\.BlockingPortal alias is deprecated", category=DeprecationWarning
    )
    import starlette.testclient  # noqa: F401
