"""The provider interface: each image backend is a small class behind it.

A generation is two steps so that a paid answer can be stored before anything else happens:
``fetch(request)`` makes one call and returns the answer as received (a :class:`RawResponse`);
``decode(raw, request)`` turns it into a :class:`GeneratedImage`.  Neither retries: the caller
classifies failures (image_batch.images.faults) and retries.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    """One answer as received: body bytes, the headers worth keeping, and for answers that point
    to a URL, the downloaded image (``attachment``)."""

    body: bytes
    headers: dict = field(default_factory=dict)
    status: int = 200
    attachment: bytes | None = None


@dataclass
class GeneratedImage:
    """A decoded answer: image bytes (PNG, JPEG or WebP; callers normalise to PNG) and the facts a
    sidecar records."""

    data: bytes
    model: str
    request_id: str | None = None
    usage: dict | None = None
    created: int | None = None
    details: dict = field(default_factory=dict)


class ImageProvider(ABC):
    """One image backend.  ``request_params`` maps the provider's config section to the fields that
    define an image (they go into the per-image spec and the response-store key)."""

    name: str = ""
    paid: bool = False

    def __init__(self, config: dict):
        self.config = config or {}

    @classmethod
    @abstractmethod
    def request_params(cls, config: dict) -> dict:
        """Fields that identify the image to make (model, size, ...), from the provider's config."""

    @abstractmethod
    def fetch(self, request: dict) -> RawResponse:
        """Make one call for ``request`` (its fields plus ``prompt``); raise on failure."""

    @abstractmethod
    def decode(self, raw: RawResponse, request: dict) -> GeneratedImage:
        """Turn an answer into an image; raise faults.InvalidResponse when it is unusable."""
