"""Speed layer in the asset graph: daily bars derived from the streaming service's 1-minute output."""
