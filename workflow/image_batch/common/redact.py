"""Keep secrets out of everything the workflow writes (logs, failure records, messages)."""

import os

from image_batch.common.settings import GEMINI_KEY_VARIABLES, KEY_VARIABLES

SECRET_VARIABLES = (*KEY_VARIABLES, *GEMINI_KEY_VARIABLES, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def redact(text):
    text = str(text)
    for name in SECRET_VARIABLES:
        value = (os.environ.get(name) or "").strip()
        if len(value) >= 6 and value in text:
            text = text.replace(value, f"<{name} redacted>")
    return text
