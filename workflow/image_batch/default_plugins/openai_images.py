"""OpenAI Images API (or any OpenAI-compatible endpoint via OPENAI_BASE_URL), with the official client."""

import base64
import binascii
import json
import os
import threading
import urllib.request

from image_batch.common.errors import UserError
from image_batch.common.settings import api_key
from image_batch.images.faults import DownloadFailed, InvalidResponse
from image_batch.providers.base import GeneratedImage, ImageProvider, RawResponse

# Request fields taken from config["openai"] when set (None/absent fields are not sent).
_OPTIONAL_FIELDS = ("size", "quality", "background", "output_format", "moderation", "output_compression")
# Answer headers worth keeping with a stored answer (never the request's Authorization).
_KEPT_HEADERS = ("x-request-id", "openai-processing-ms", "openai-version", "openai-model", "content-type")

_clients = {}
_clients_lock = threading.Lock()


def _client(timeout):
    """One client per key/endpoint/timeout, shared by the threads of this process.  Its own retries
    are off: image_batch.generate classifies failures and retries (so retries never multiply)."""
    from openai import OpenAI

    key = api_key()
    if not key:
        raise UserError("provider 'openai' needs an API key: set AI_API_KEY (in the environment or .env).")
    base_url = os.environ.get("OPENAI_BASE_URL") or None
    cache_key = (key, base_url, timeout)
    with _clients_lock:
        if cache_key not in _clients:
            _clients[cache_key] = OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
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

    @property
    def timeout(self):
        return float(self.config.get("timeout", 300))

    def client(self):
        return _client(self.timeout)

    def fetch(self, request):
        client = self.client()
        kwargs = {field: request[field] for field in _OPTIONAL_FIELDS if request.get(field) is not None}
        # response_format is never sent: gpt-image-* models reject it and always return base64.
        raw = client.images.with_raw_response.generate(
            model=request["model"],
            prompt=request["prompt"],
            n=1,
            extra_body=request.get("extra_body") or None,
            **kwargs,
        )
        headers = {name: raw.headers[name] for name in _KEPT_HEADERS if name in raw.headers}
        headers.update({k: v for k, v in raw.headers.items() if k.lower().startswith("x-ratelimit-")})
        return RawResponse(body=raw.content, headers=headers, status=raw.status_code)

    # Batch API: the same request as one JSONL line, and a line's answer as a stored answer.
    batch_endpoint = "/v1/images/generations"

    def batch_body(self, request):
        """The JSON body ``fetch`` sends for ``request``, for a Batch API input line."""
        body = {"model": request["model"], "prompt": request["prompt"], "n": 1}
        body.update({field: request[field] for field in _OPTIONAL_FIELDS if request.get(field) is not None})
        body.update(request.get("extra_body") or {})
        return body

    @staticmethod
    def batch_answer(response):
        """A Batch API output line's ``response`` as the RawResponse a live call would have given."""
        body = json.dumps(response["body"], ensure_ascii=False).encode("utf-8")
        headers = {"x-request-id": response.get("request_id")} if response.get("request_id") else {}
        return RawResponse(body=body, headers=headers, status=int(response.get("status_code", 200)))

    def _download(self, url, request_id):
        """Some OpenAI-compatible endpoints answer with a URL rather than base64."""
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:
                return answer.read()
        except (OSError, ValueError) as exc:
            raise DownloadFailed(f"could not download the image of request {request_id}: {exc}") from None

    def decode(self, raw, request):
        request_id = raw.headers.get("x-request-id")
        try:
            answer = json.loads(raw.body)
            item = answer["data"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise InvalidResponse(f"the answer is not an images response (request id {request_id})") from None
        if item.get("b64_json"):
            try:
                data = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidResponse(f"broken base64 in the answer (request id {request_id}): {exc}") from None
        elif raw.attachment is not None:
            data = raw.attachment
        elif item.get("url"):
            data = raw.attachment = self._download(item["url"], request_id)  # kept with the stored answer
        else:
            raise InvalidResponse(f"the answer has no image (request id {request_id})")
        details = {
            name: answer.get(name) for name in ("size", "quality", "background", "output_format") if answer.get(name)
        }
        return GeneratedImage(
            data=data,
            model=request["model"],
            request_id=request_id,
            usage=answer.get("usage"),
            created=answer.get("created"),
            details=details,
        )
