"""The provider interface: each image backend is a small class behind it."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class GeneratedImage:
    """What a provider returns for one request: the image bytes as received plus the facts a
    sidecar records.  ``data`` may be PNG, JPEG or WebP; callers normalise it to PNG."""

    data: bytes
    model: str
    request_id: str | None = None
    usage: dict | None = None
    created: int | None = None
    details: dict = field(default_factory=dict)


class ImageProvider(ABC):
    """One image backend.  ``request_params`` maps the provider's config section to the request
    fields that define an image (they go into the per-image spec and decide when it is stale);
    ``generate`` makes one image for a request (those fields plus ``prompt``)."""

    name: str = ""
    paid: bool = False

    def __init__(self, config: dict):
        self.config = config or {}

    @classmethod
    @abstractmethod
    def request_params(cls, config: dict) -> dict:
        """Fields that identify the image to make (model, size, ...), from the provider's config."""

    @abstractmethod
    def generate(self, request: dict) -> GeneratedImage:
        """Make one image for ``request``; raise on failure."""
