"""Export: TF Serving SavedModels with the frontend in the graph.

`saved_model` (export_run, export_saved_model), `signatures` (the graph),
`version_folder` (the output folder and its record).
"""

from keras_timbre.export.saved_model import export_run, export_saved_model
from keras_timbre.export.version_folder import ExportExistsError, read_export_metadata

__all__ = ["ExportExistsError", "export_run", "export_saved_model", "read_export_metadata"]
