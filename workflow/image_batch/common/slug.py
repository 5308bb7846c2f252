"""Context name -> folder name."""

import re
import unicodedata

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def context_folder(context: str) -> str:
    """NFKD-normalise to ASCII, lower-case, collapse every run of other characters to one '-',
    strip leading/trailing '-'.  ``Food & Beverage`` -> ``food-beverage``.  May return ''."""
    ascii_text = unicodedata.normalize("NFKD", context).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALNUM.sub("-", ascii_text.lower()).strip("-")
