"""Process start-up settings that must precede the first TensorFlow import.

A minimal stand-in: another branch owns the full version (quiet unless verbose).
"""

import os


def quiet_native_logs() -> None:
    """Hides TensorFlow's C++ INFO and WARNING start-up lines, unless the user set a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
