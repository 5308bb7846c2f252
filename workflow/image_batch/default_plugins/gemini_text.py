"""Prompts written by a Gemini model (``describe:``): one ``models.generate_content`` call with text
output (``system_instruction`` = the instructions, ``contents`` = the description), with Google's
own SDK as default_plugins/gemini.py uses it: the answer is kept as received (the SDK's
``should_return_http_response``), the prompt is the text of its first candidate's parts (thought
parts left out). A prompt blocked by Gemini fails that row alone (faults.Refused).
"""

import json

from image_batch.default_plugins.gemini import API_VERSION, GeminiImagesProvider, _get, base_url, usage_of
from image_batch.hookspecs import hookimpl
from image_batch.images.faults import InvalidResponse, Refused
from image_batch.writers import PromptWriter

ENDPOINT = "generateContent:text"


def answer_text(answer):
    """(text, usage) of a generateContent answer (a dict); faults.Refused for a blocked prompt,
    faults.InvalidResponse for an answer with no text."""
    if not isinstance(answer, dict):
        raise InvalidResponse("the answer is not a generateContent response")
    feedback = _get(answer, "prompt_feedback") or {}
    candidates = answer.get("candidates") or []
    if not candidates and _get(feedback, "block_reason"):
        block = _get(feedback, "block_reason")
        raise Refused(f"refused by Gemini: the description was blocked ({block})", str(block))
    texts = []
    for candidate in candidates[:1]:
        parts = ((candidate or {}).get("content") or {}).get("parts") or []
        texts += [str(p["text"]) for p in parts if isinstance(p, dict) and p.get("text") and not p.get("thought")]
    text = "".join(texts).strip()
    if not text:
        reason = _get(candidates[0], "finish_reason") if candidates else None
        raise InvalidResponse(f"the answer holds no text (finishReason {reason or 'none'})")
    return text, usage_of(_get(answer, "usage_metadata"))


class GeminiTextWriter(PromptWriter):
    name = "gemini"
    paid = True

    @classmethod
    def request_params(cls, section, environ=None):
        return {"endpoint": ENDPOINT, "base_url": base_url(environ), "api_version": API_VERSION}

    def _images(self):
        return GeminiImagesProvider(self.config)

    def fetch(self, request):
        from google.genai import types

        from image_batch.providers import RawResponse

        config = types.GenerateContentConfig(
            system_instruction=request["instructions"],
            response_modalities=["TEXT"],
            should_return_http_response=True,  # the body as received: it is stored before it is read
        )
        answer = (
            self._images()
            .client(request)
            .models.generate_content(model=request["model"], contents=request["input"], config=config)
        )
        http = answer.sdk_http_response
        got = {str(k).lower(): v for k, v in (http.headers or {}).items()}
        headers = {name: got[name] for name in ("content-type", "x-goog-request-id") if name in got}
        body = http.body if isinstance(http.body, (bytes, bytearray)) else (http.body or "").encode("utf-8")
        return RawResponse(body=bytes(body), headers=headers, status=200)

    def text(self, raw, request):
        try:
            answer = json.loads(raw.body)
        except (ValueError, TypeError):
            raise InvalidResponse("the answer is not JSON") from None
        return answer_text(answer)

    def classify(self, exc, request=None):
        return self._images().classify(exc, None)

    # Batch API (images.gemini_batch.GeminiBatchRunner runs it): one inline request per prompt.
    batch = True

    def client(self, request=None):
        return self._images().client(request)

    def batch_body(self, request):
        config = {"system_instruction": request["instructions"], "response_modalities": ["TEXT"]}
        return {"contents": request["input"], "config": config}

    def batch_answer(self, response):
        from image_batch.providers import RawResponse

        return RawResponse(body=json.dumps(response, ensure_ascii=False).encode("utf-8"), status=200)


@hookimpl
def register_prompt_writers(register):
    register(GeminiTextWriter)
