"""`python -m keras_timbre.cli`: the same command line as the `keras-timbre` script.

Python imports the package before this file, so the quiet start happened in
`keras_timbre/__init__.py`, which recognises this command from `sys.orig_argv`
before it loads Keras and TensorFlow (docs/startup.md).
"""

import sys

from keras_timbre.cli import main

sys.exit(main())
