"""Models: Keras layers, parts, losses and the model family (keras.ops only, every backend).

Importing this package registers every serialisable class with Keras, so
`keras.saving.load_model` finds them.
"""

from keras_timbre.models import layers  # noqa: F401  (registers the layers)
from keras_timbre.models import hierarchy  # noqa: F401  (registers the hierarchy's layers)
from keras_timbre.models import parts  # noqa: F401  (registers the parts)
from keras_timbre.models import variants  # noqa: F401  (registers TimbreVAE and HierarchicalTimbreVAE)
