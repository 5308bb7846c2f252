"""The images stage: make each image (API call, response store, retries, pacing, batch mode)."""
