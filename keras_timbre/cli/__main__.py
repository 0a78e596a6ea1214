import sys

from keras_timbre.cli import main

sys.exit(main())
