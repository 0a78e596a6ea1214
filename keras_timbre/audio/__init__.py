"""Audio: decoding files, the log-mel frontend, its inverse, feature statistics."""
