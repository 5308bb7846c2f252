"""The built-in offline generator: no network, no key, no cost.

It draws a real PNG that is deterministic from the prompt: a colour field derived from the prompt's
SHA-256 with the prompt's text on it and an 'OFFLINE PLACEHOLDER' banner, so nobody mistakes it for
a generated picture.
"""

import hashlib
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

from image_batch.hookspecs import hookimpl
from image_batch.providers import GeneratedImage, ImageProvider, RawResponse

GENERATOR_VERSION = "offline-text-card-1"


def _size(text):
    width, height = (int(v) for v in str(text).lower().split("x"))
    return width, height


class OfflineProvider(ImageProvider):
    name = "offline"
    paid = False

    @classmethod
    def request_params(cls, config, environ=None):
        return {"model": GENERATOR_VERSION, "size": str(config.get("size") or "512x512")}

    def fetch(self, request):
        prompt = request["prompt"]
        width, height = _size(request.get("size") or "512x512")
        digest = hashlib.sha256(prompt.encode("utf-8")).digest()
        background = tuple(digest[:3])
        accent = tuple(digest[3:6])
        ink = (0, 0, 0) if sum(background) > 380 else (255, 255, 255)

        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        band = max(height // 10, 12)
        draw.rectangle([0, height - band, width, height], fill=accent)
        small = ImageFont.load_default(size=max(band // 2, 8))
        draw.text((8, height - band + band // 4), "OFFLINE PLACEHOLDER", fill=ink, font=small)

        font_size = max(min(width, height) // 18, 10)
        font = ImageFont.load_default(size=font_size)
        chars_per_line = max(int(width / (font_size * 0.55)), 8)
        max_lines = max((height - band) // int(font_size * 1.3) - 1, 1)
        lines = textwrap.wrap(prompt, chars_per_line)[:max_lines]
        y = font_size // 2
        for line in lines:
            draw.text((font_size // 2, y), line, fill=ink, font=font)
            y += int(font_size * 1.3)

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return RawResponse(body=buffer.getvalue())

    def decode(self, raw, request):
        return GeneratedImage(data=raw.body, model=GENERATOR_VERSION, details={"size": request.get("size")})


@hookimpl
def register_image_providers(register):
    register(OfflineProvider)


class OfflineWriter:
    """The built-in prompt writer (``describe:`` with no key, or ``describe.provider: offline``):
    no call, no cost; deterministic, and plainly not a model's prompt: the description, then the
    first words of the instructions."""

    name = "offline"
    paid = False

    def __init__(self, section=None):
        self.config = section or {}

    @classmethod
    def request_params(cls, section, environ=None):
        return {"endpoint": "offline-writer-1"}

    def write(self, request):
        words = " ".join(str(request["instructions"]).split()[:6])
        return f"{request['input'].strip()} (offline writer; instructions: {words} ...)"


@hookimpl
def register_prompt_writers(register):
    register(OfflineWriter)
