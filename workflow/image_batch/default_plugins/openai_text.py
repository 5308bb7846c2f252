"""Prompts written by an OpenAI chat model (``describe:``), through the Responses API
(``POST /v1/responses``: ``model``, ``instructions``, ``input``), with the official client, at
OPENAI_BASE_URL or OpenAI's own endpoint (part of the request, so of the response store's key).

The answer is kept as received; the prompt is its ``output_text``: the text of the ``output_text``
parts of its ``message`` items, joined (what the SDK's ``Response.output_text`` returns). Its
``usage`` has ``input_tokens`` and ``output_tokens``.
"""

import json

from image_batch.default_plugins.openai_images import _KEPT_HEADERS, OpenAIImagesProvider, base_url
from image_batch.hookspecs import hookimpl
from image_batch.images.faults import InvalidResponse
from image_batch.providers import RawResponse
from image_batch.writers import PromptWriter

ENDPOINT = "responses"


def output_text(answer):
    """The text of a Responses answer (as the SDK's ``output_text``), or None when it has none."""
    texts = []
    for item in answer.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text" and part.get("text") is not None:
                    texts.append(part["text"])
    return "".join(texts) if texts else None


class OpenAIResponsesWriter(PromptWriter):
    name = "openai"
    paid = True

    @classmethod
    def request_params(cls, section, environ=None):
        return {"endpoint": ENDPOINT, "base_url": base_url(environ)}

    def _images(self):
        return OpenAIImagesProvider(self.config)

    def fetch(self, request):
        client = self._images().client(request)
        raw = client.responses.with_raw_response.create(
            model=request["model"], instructions=request["instructions"], input=request["input"]
        )
        headers = {name: raw.headers[name] for name in _KEPT_HEADERS if name in raw.headers}
        headers.update({k: v for k, v in raw.headers.items() if k.lower().startswith("x-ratelimit-")})
        return RawResponse(body=raw.content, headers=headers, status=raw.status_code)

    def text(self, raw, request):
        request_id = raw.headers.get("x-request-id")
        try:
            answer = json.loads(raw.body)
        except (ValueError, TypeError):
            raise InvalidResponse(f"the answer is not a Responses answer (request id {request_id})") from None
        text = output_text(answer) if isinstance(answer, dict) else None
        if not text or not text.strip():
            status = answer.get("status") if isinstance(answer, dict) else None
            raise InvalidResponse(f"the answer holds no text (status {status}, request id {request_id})")
        return text.strip(), answer.get("usage")

    def classify(self, exc, request=None):
        return self._images().classify(exc, None)

    # Batch API: the same call as one JSONL line of a /v1/responses batch (images.batch.BatchRunner
    # runs it through batch_provider()), and a line's answer as a stored answer.
    batch = True
    batch_endpoint = "/v1/responses"

    def batch_body(self, request):
        return {"model": request["model"], "instructions": request["instructions"], "input": request["input"]}

    def batch_answer(self, response):
        body = json.dumps(response["body"], ensure_ascii=False).encode("utf-8")
        headers = {"x-request-id": response.get("request_id")} if response.get("request_id") else {}
        return RawResponse(body=body, headers=headers, status=int(response.get("status_code", 200)))

    def batch_client(self):
        return self._images().client()


@hookimpl
def register_prompt_writers(register):
    register(OpenAIResponsesWriter)
