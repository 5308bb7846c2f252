"""OpenAI Images API (or any OpenAI-compatible endpoint via OPENAI_BASE_URL), with the official client."""

import base64
import binascii
import os
import threading
import urllib.request

from ..errors import UserError
from ..settings import api_key
from .base import GeneratedImage, ImageProvider

# Request fields taken from config["openai"] when set (None/absent fields are not sent).
_OPTIONAL_FIELDS = ("size", "quality", "background", "output_format", "moderation", "output_compression")

_clients = {}
_clients_lock = threading.Lock()


class ProviderError(RuntimeError):
    """The API answered, but not with a usable image."""


def _client(timeout, max_retries):
    """One client per key/endpoint/options, shared by the threads of this process."""
    from openai import OpenAI

    key = api_key()
    if not key:
        raise UserError("provider 'openai' needs an API key: set AI_API_KEY (in the environment or .env).")
    base_url = os.environ.get("OPENAI_BASE_URL") or None
    cache_key = (key, base_url, timeout, max_retries)
    with _clients_lock:
        if cache_key not in _clients:
            _clients[cache_key] = OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        return _clients[cache_key]


class OpenAIImagesProvider(ImageProvider):
    name = "openai"
    paid = True

    @classmethod
    def request_params(cls, config):
        model = config.get("model")
        if not model:
            raise UserError("config openai.model is not set: name the image model to use (e.g. a gpt-image-* model).")
        params = {"endpoint": "images/generations", "model": str(model)}
        for field in _OPTIONAL_FIELDS:
            if config.get(field) is not None:
                params[field] = config[field]
        if config.get("extra_body"):
            params["extra_body"] = dict(config["extra_body"])
        return params

    def generate(self, request):
        client = _client(float(self.config.get("timeout", 300)), int(self.config.get("max_retries", 2)))
        kwargs = {field: request[field] for field in _OPTIONAL_FIELDS if request.get(field) is not None}
        # response_format is never sent: gpt-image-* models reject it and always return base64.
        raw = client.images.with_raw_response.generate(
            model=request["model"],
            prompt=request["prompt"],
            n=1,
            extra_body=request.get("extra_body") or None,
            **kwargs,
        )
        response = raw.parse()
        request_id = raw.headers.get("x-request-id") or getattr(response, "_request_id", None)
        if not response.data:
            raise ProviderError(f"the API returned no image (request id {request_id})")
        item = response.data[0]
        if item.b64_json:
            try:
                data = base64.b64decode(item.b64_json, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProviderError(f"the API returned broken base64 (request id {request_id}): {exc}") from None
        elif item.url:
            with urllib.request.urlopen(item.url, timeout=float(self.config.get("timeout", 300))) as answer:
                data = answer.read()
        else:
            raise ProviderError(f"the API returned neither b64_json nor url (request id {request_id})")
        details = {
            name: getattr(response, name, None)
            for name in ("size", "quality", "background", "output_format")
            if getattr(response, name, None) is not None
        }
        return GeneratedImage(
            data=data,
            model=request["model"],
            request_id=request_id,
            usage=response.usage.model_dump() if response.usage else None,
            created=response.created,
            details=details,
        )
