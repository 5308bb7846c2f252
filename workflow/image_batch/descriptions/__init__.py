"""The descriptions stage: read and check the sheet, turn rows into per-image requests."""
