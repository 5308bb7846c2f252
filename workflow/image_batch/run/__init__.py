"""What only a real run does: the run lock, the stop flag, the summary."""
