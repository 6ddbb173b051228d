"""faust, imported without letting it read our command line.

faust's package __init__ scans sys.argv for its own CLI's `--datadir`, `--loop` and `-L`
(by prefix, so the sampler's `--loop-files` matched) and acts on them at import time. The
services have their own flags, so faust is imported with the command line hidden.
"""

from __future__ import annotations

import sys

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import faust
finally:
    sys.argv = _argv

__all__ = ["faust"]
