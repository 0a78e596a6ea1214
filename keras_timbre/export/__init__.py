"""Export: TF Serving SavedModels with the frontend in the graph."""
