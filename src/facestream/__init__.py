"""facestream: real-time face recognition for city camera networks, accountable by construction."""

__version__ = "0.1.0"
