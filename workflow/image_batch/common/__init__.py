"""What the stages share: errors, settings, file writes, redaction, slugs, job logs."""
