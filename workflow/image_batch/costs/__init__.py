"""Prices and costs: the model catalogue, estimates before a run, the bill after it."""
