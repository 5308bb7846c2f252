"""OpenAI Images API (or any OpenAI-compatible endpoint via OPENAI_BASE_URL), with the official client.

The endpoint is part of every request's identity (``base_url`` in the request, so in the response
store's key): an answer paid for at one endpoint (a gateway, a stand-in) is never served for another.
"""

import base64
import binascii
import json
import os
import threading
import urllib.request

from image_batch.common.errors import UserError
from image_batch.common.settings import api_key
from image_batch.hookspecs import hookimpl
from image_batch.images.faults import RETRY, DownloadFailed, Fault, InvalidResponse, classify_api_error
from image_batch.providers import GeneratedImage, ImageProvider, RawResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Request fields taken from config["openai"] when set (None/absent fields are not sent).
_OPTIONAL_FIELDS = ("size", "quality", "background", "output_format", "moderation", "output_compression")
# The fields of _OPTIONAL_FIELDS that /v1/images/edits takes (it has no moderation).
_EDIT_FIELDS = ("size", "quality", "background", "output_format", "output_compression")
# Sent in the JSON body only (the client has no keyword for them yet): gpt-image-2.6's complexity.
_BODY_FIELDS = ("complexity",)
# Answer headers worth keeping with a stored answer (never the request's Authorization).
_KEPT_HEADERS = ("x-request-id", "openai-processing-ms", "openai-version", "openai-model", "content-type")

_clients = {}
_clients_lock = threading.Lock()


def _client(timeout, base_url):
    """One client per key/endpoint/timeout, shared by the threads of this process.  Its own retries
    are off: image_batch.generate classifies failures and retries (so retries never multiply)."""
    from openai import OpenAI

    key = api_key()
    if not key:
        raise UserError("provider 'openai' needs an API key: set AI_API_KEY (in the environment or .env).")
    cache_key = (key, base_url, timeout)
    with _clients_lock:
        if cache_key not in _clients:
            _clients[cache_key] = OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        return _clients[cache_key]


def base_url(environ=None):
    """The endpoint requests go to: OPENAI_BASE_URL, else OpenAI's own; without a trailing slash."""
    environ = os.environ if environ is None else environ
    return ((environ.get("OPENAI_BASE_URL") or "").strip() or DEFAULT_BASE_URL).rstrip("/")


class OpenAIImagesProvider(ImageProvider):
    name = "openai"
    paid = True
    batch = True

    @classmethod
    def request_params(cls, config, environ=None):
        model = config.get("model")
        if not model:
            raise UserError("config openai.model is not set: name the image model to use (e.g. a gpt-image-* model).")
        params = {"endpoint": "images/generations", "base_url": base_url(environ), "model": str(model)}
        for field in _OPTIONAL_FIELDS + _BODY_FIELDS:
            if config.get(field) is not None:
                params[field] = config[field]
        if config.get("extra_body"):
            params["extra_body"] = dict(config["extra_body"])
        return params

    @property
    def timeout(self):
        return float(self.config.get("timeout", 300))

    def client(self, request=None):
        return _client(self.timeout, (request or {}).get("base_url") or base_url())

    batch_client = client

    @staticmethod
    def _extra_body(request):
        body = {field: request[field] for field in _BODY_FIELDS if request.get(field) is not None}
        body.update(request.get("extra_body") or {})
        return body or None

    def fetch(self, request, inputs=None):
        client = self.client(request)
        kwargs = {field: request[field] for field in _OPTIONAL_FIELDS if request.get(field) is not None}
        # response_format is never sent: gpt-image-* models reject it and always return base64.
        if inputs is not None:
            # an edit request (descriptions.references): multipart, the pictures as image[] in the
            # sheet's order, the mask as mask; the edits endpoint takes no moderation setting
            kwargs = {field: value for field, value in kwargs.items() if field in _EDIT_FIELDS}
            if inputs.mask is not None:
                kwargs["mask"] = inputs.mask
            raw = client.images.with_raw_response.edit(
                model=request["model"],
                prompt=request["prompt"],
                image=list(inputs.images),
                n=1,
                extra_body=self._extra_body(request),
                **kwargs,
            )
        else:
            raw = client.images.with_raw_response.generate(
                model=request["model"],
                prompt=request["prompt"],
                n=1,
                extra_body=self._extra_body(request),
                **kwargs,
            )
        headers = {name: raw.headers[name] for name in _KEPT_HEADERS if name in raw.headers}
        headers.update({k: v for k, v in raw.headers.items() if k.lower().startswith("x-ratelimit-")})
        return RawResponse(body=raw.content, headers=headers, status=raw.status_code)

    # Batch API: the same request as one JSONL line, and a line's answer as a stored answer.
    batch_endpoint = "/v1/images/generations"

    batch_edit_endpoint = "/v1/images/edits"  # edit requests: batches of their own

    def batch_body(self, request, inputs=None):
        """The JSON body ``fetch`` sends for ``request``, for a Batch API input line. An edit request
        (``inputs``: its pictures) is the JSON form of /v1/images/edits: ``images`` and ``mask`` as
        ``image_url`` data URLs."""
        body = {"model": request["model"], "prompt": request["prompt"], "n": 1}
        fields = _OPTIONAL_FIELDS if inputs is None else _EDIT_FIELDS
        body.update({field: request[field] for field in fields if request.get(field) is not None})
        if inputs is not None:
            from image_batch.descriptions.references import data_url

            body["images"] = [{"image_url": data_url(data, mime)} for _, data, mime in inputs.images]
            if inputs.mask is not None:
                body["mask"] = {"image_url": data_url(inputs.mask[1], inputs.mask[2])}
        body.update(self._extra_body(request) or {})
        return body

    def batch_answer(self, response):
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

    def classify(self, exc, request=None):
        """What an exception from :meth:`fetch` means (faults.Fault), or None for a bug."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return Fault(RETRY, "the API did not answer in time")
        if isinstance(exc, openai.APIConnectionError):
            return Fault(RETRY, f"connection problem: {exc.__cause__ or exc}")
        if not isinstance(exc, openai.APIStatusError):
            return None
        body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
        error = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
        message = str(error.get("message") or getattr(exc, "message", None) or exc)
        headers = exc.response.headers if exc.response is not None else {}
        return classify_api_error(
            exc.status_code,
            getattr(exc, "code", None) or error.get("code"),
            getattr(exc, "param", None) or error.get("param"),
            message,
            headers,
            request,
            getattr(exc, "type", None) or error.get("type"),
        )


@hookimpl
def register_image_providers(register):
    register(OpenAIImagesProvider)
