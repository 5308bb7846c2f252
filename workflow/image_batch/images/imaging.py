"""Check image bytes and normalise them to PNG."""

import io

from PIL import Image, UnidentifiedImageError


class NotAnImage(ValueError):
    """The bytes are not a decodable image."""


def to_png(data: bytes):
    """Return ``(png_bytes, info)``.  PNG input is kept byte for byte once it fully decodes; JPEG,
    WebP and other formats Pillow reads are converted.  Anything that does not decode completely
    (garbage, truncated data) raises :class:`NotAnImage`, so it never becomes a file."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            source_format = image.format
            info = {"width": image.width, "height": image.height, "source_format": source_format}
            if source_format == "PNG":
                return data, info
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            out = io.BytesIO()
            image.save(out, format="PNG")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(f"not a decodable image ({len(data)} bytes): {exc}") from None
    info["converted_from"] = source_format
    return out.getvalue(), info
