import io

import pytest
from PIL import Image

from image_batch.default_plugins.offline import OfflineProvider
from image_batch.images.imaging import NotAnImage, to_png


def encoded(fmt, mode="RGB", color=(200, 10, 30)):
    buffer = io.BytesIO()
    Image.new(mode, (16, 8), color).save(buffer, format=fmt)
    return buffer.getvalue()


def test_png_kept_byte_for_byte():
    data = encoded("PNG")
    png, info = to_png(data)
    assert png == data and info["source_format"] == "PNG" and "converted_from" not in info


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_become_png(fmt):
    png, info = to_png(encoded(fmt))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert info["converted_from"] == fmt and (info["width"], info["height"]) == (16, 8)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (16, 8)


def test_webp_with_alpha_keeps_alpha():
    png, _ = to_png(encoded("WEBP", "RGBA", (1, 2, 3, 128)))
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "RGBA"


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_is_refused(data):
    with pytest.raises(NotAnImage):
        to_png(data)


def test_truncated_png_is_refused():
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).save(buffer, format="PNG")
    with pytest.raises(NotAnImage):
        to_png(buffer.getvalue()[:-500])


def test_offline_generator_is_deterministic_and_real():
    provider = OfflineProvider({"size": "128x96"})
    request = {"provider": "offline", **OfflineProvider.request_params({"size": "128x96"}), "prompt": "a red fox"}
    first, second = provider.fetch(request).body, provider.fetch(request).body
    other = provider.fetch({**request, "prompt": "a blue whale"}).body
    assert first == second and first != other
    png, info = to_png(provider.decode(provider.fetch(request), request).data)
    assert (info["width"], info["height"]) == (128, 96)
    with Image.open(io.BytesIO(png)) as image:
        assert len(image.getcolors(100000)) > 2  # text drawn on a colour field, not a blank
