"""The package's handle on the quiet start; the code lives in the top-level `keras_timbre_quiet` module.

It sits outside the package so that a script, and the `keras-timbre` console
script, can import it before `keras_timbre/__init__.py` loads Keras and
TensorFlow (docs/startup.md). `import keras_timbre` calls only
`start_if_command_line()`, which does nothing unless this process is the
command line: a script's import changes nothing global.
"""

from keras_timbre_quiet import VERBOSE_ENV, command_line_interrupts, start_if_command_line

__all__ = ["VERBOSE_ENV", "command_line_interrupts", "start_if_command_line"]
