"""Models: Keras layers, losses and `TimbreVAE` (keras.ops only, every backend).

Importing this package registers every serialisable class with Keras, so
`keras.saving.load_model` finds them.
"""

from keras_timbre.models import layers  # noqa: F401  (registers the layers)
from keras_timbre.models import timbre_vae  # noqa: F401  (registers TimbreVAE)
from keras_timbre.models import hierarchy  # noqa: F401  (registers the hierarchy's layers)
from keras_timbre.models import hierarchical_vae  # noqa: F401  (registers HierarchicalTimbreVAE)
