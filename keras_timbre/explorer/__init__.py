"""The explorer page: one self-contained HTML file to look at and listen to a run's notes and codes."""
