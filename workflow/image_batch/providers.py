"""The provider interface: each image backend is a small class behind it, registered by a plugin
(see hookspecs; Image.Batch's own are in default_plugins/).

A generation is two steps so that a paid answer can be stored before anything else happens:
``fetch(request)`` makes one call and returns the answer as received (a :class:`RawResponse`);
``decode(raw, request)`` turns it into a :class:`GeneratedImage`.  Neither retries: the caller asks
``classify(exc)`` what a failure means (image_batch.images.faults) and retries.
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
    """One image backend.

    ``name`` selects it (config ``provider``); its settings are the config section of that name.
    ``paid`` providers get the response store, the pacer, retries and cost reports; ``batch`` ones
    (with :meth:`batch_body` and :meth:`batch_answer`) can run in ``mode: batch``.
    """

    name: str = ""
    paid: bool = False
    batch: bool = False

    def __init__(self, section: dict):
        self.config = section or {}

    @classmethod
    @abstractmethod
    def request_params(cls, section: dict, environ) -> dict:
        """The fields that identify an image (model, size, ..., and for a paid API its endpoint), from
        the provider's config section and the environment. They go into the per-image request file
        and the response store's key, so any change makes the image stale and is paid for anew."""

    @abstractmethod
    def fetch(self, request: dict) -> RawResponse:
        """Make one call for ``request`` (its fields plus ``prompt``); raise on failure."""

    @abstractmethod
    def decode(self, raw: RawResponse, request: dict) -> GeneratedImage:
        """Turn an answer into an image; raise faults.InvalidResponse when it is unusable."""

    def classify(self, exc):
        """A faults.Fault for an exception ``fetch`` raised, or None when it is not an API fault
        (a bug: it then propagates)."""
        return None

    # Batch API (only for providers with ``batch = True``)
    batch_endpoint = ""

    def batch_body(self, request: dict) -> dict:
        raise NotImplementedError

    def batch_answer(self, response: dict) -> RawResponse:
        raise NotImplementedError

    def batch_client(self):
        raise NotImplementedError


def get_provider(name: str, settings) -> ImageProvider:
    """An instance of provider ``name`` configured from its section of ``settings``."""
    from image_batch.plugins import provider_class

    return provider_class(name)(settings.section(name))


def provider_class(name):
    from image_batch.plugins import provider_class as find

    return find(name)
