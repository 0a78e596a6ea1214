"""Analysis of log-mel arrays (numpy): metrics and figures, for training, evaluation and tuning."""
