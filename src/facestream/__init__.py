"""facestream: real-time face recognition for city camera networks, accountable by construction."""

import os

# onnxruntime >= 1.29 on Linux writes a device id and a telemetry cache under ~/.cache and TMPDIR
# and uploads usage events unless this is set before it initialises. A face recognition system
# must not talk to third parties or leave files behind: off by default (docs/accountability.md).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
