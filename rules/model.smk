"""Model acquisition: random weights from an architecture file, or a pinned hub snapshot."""
