"""Image providers, by name.  Add a backend by writing an ImageProvider subclass and listing it here."""

from image_batch.providers.base import GeneratedImage, ImageProvider
from image_batch.providers.offline import OfflineProvider
from image_batch.providers.openai_images import OpenAIImagesProvider

PROVIDERS = {cls.name: cls for cls in (OpenAIImagesProvider, OfflineProvider)}

__all__ = ["GeneratedImage", "ImageProvider", "PROVIDERS", "get_provider"]


def get_provider(name: str, config: dict) -> ImageProvider:
    """An instance of provider ``name`` configured from ``config[name]``."""
    return PROVIDERS[name](config.get(name) or {})
