"""The stand-in's own model of the real OpenAI Images API as of 2026-11-27: facts first, then the rules built on them.

Independent of ``workflow/image_batch`` on purpose: the workflow's model catalogue is written separately, and
``tests/test_catalogue_vs_stand_in.py`` compares the two.  Every fact below names its source and date; the tags and
"research §N" sections are resolved, with URLs and the dates they were checked, in ``tests/support/SOURCES.md``
("OFFICIAL" = developers.openai.com / OpenAI repos, "3RD" = third parties).  Where no source exists the entry says
"ASSUMPTION".

Facts
=====

Models (research §1)
--------------------
==================================  ==========  ==========  ==========================================================
model                               released    shutdown    source (date)
==================================  ==========  ==========  ==========================================================
dall-e-2, dall-e-3                  -           2026-05-12  OFFICIAL API reference "retired on May 12, 2026" (2.5-era);
                                                            installed openai 3.54.0 ImageModel docstring
gpt-image-1                         -           2026-10-23  OFFICIAL ja-JP model page (after 2026-10-23); 3RD apiyi
                                                            2026-10-24; openai 3.54.0 docstring "shut down on October
                                                            23, 2026"
gpt-image-1-mini                    -           2026-12-01  OFFICIAL deprecations page [DEP] (notice 2026-06-02)
gpt-image-1.5, gpt-image-1.5-       -           2026-12-01  [DEP] (notice 2026-06-02)
2025-12-16, chatgpt-image-latest
gpt-image-2, gpt-image-2-2026-04-21 2026-04-21  -           OFFICIAL models/gpt-image-2.md "Default snapshot"
gpt-image-2.5-sunburst, -flare      2026-09-08  -           OFFICIAL openai-java spec [REF25] snapshots; 3RD apiyi
(+ -2026-09-08 snapshots)                                   2026-09-09
gpt-image-2.6-sunburst, -flare      2026-11-04  -           3RD apiyi / apidog 2026-11-05; OFFICIAL model page lists
                                                            no dated 2.6 snapshot [M-26S]
==================================  ==========  ==========  ==========================================================

"-" under released: before the research window; such a model answers on any ``today`` before its shutdown.

Settings (research §2)
----------------------
- quality: ``low|medium|high|auto`` for 1.x and gpt-image-2 [SDK 3.3.1 2026-08-21; REF25]; 2.5 adds ``xhigh|max``
  [REF25]; 2.6 the same six [3RD apidog 2026-11-05]. ``auto`` makes ``medium`` (ASSUMPTION, from the brief).
  dall-e-3 ``standard|hd``, dall-e-2 ``standard`` [SDK].
- size: 1.x ``1024x1024|1024x1536|1536x1024|auto`` [SDK; REF25]; 2.x ``auto`` or ``WxH``: both sides multiples of 16,
  aspect ratio within 3:1, max edge 3840, 655,360 to 8,294,400 pixels [REF25; 3RD Azure docs PR #779 2026-07-08,
  community.openai.com 1382699 2026-06-05]; 2.6 as 2.5 [3RD docs.comfy.org]. ``auto`` makes 1024x1024 (ASSUMPTION).
  dall-e-2 ``256x256|512x512|1024x1024``, dall-e-3 ``1024x1024|1792x1024|1024x1792`` [SDK].
- background: ``transparent|opaque|auto``; transparent needs png or webp [SDK]; gpt-image-2 takes no ``transparent``
  (launch state, 3RD sub2api api.md ~2026-04; later "preview" [SDK 3.3.1]: the stand-in keeps the refusal).
- complexity: only 2.6, ``low|medium|high``, default ``high``, no extra charge [OFFICIAL ko-KR guide GUIDE-KO];
  2.5 has none [3RD docs.comfy.org].
- output_format ``png|jpeg|webp`` (default png); output_compression 0-100, jpeg/webp only; moderation ``low|auto``;
  n 1-10; prompt at most 32,000 characters; response_format only for dall-e [SDK; REF25]. GIF/SVG output of 2.6
  needs preview access [M-26S; openai 3.54.0 docstring]: the stand-in's account has none, so it refuses them.

Output image tokens per image (research §4)
-------------------------------------------
- 1.x (gpt-image-1, -1-mini, -1.5, chatgpt-image-latest): :data:`TOKENS_1X` [community.openai.com 1371851, 2026].
- 2.x: the calculator formula of :func:`formula_tokens` [3RD community.openai.com 1382699, 2026-06-05; checks in
  thread 1379464 2026-04-21, new-api#4474 2026-04-26, sub2api#3222 2026-06-11]; factors low 16, medium 48, high 96.
  For 2.5 and 2.6 also xhigh 144 and max 192: **ASSUMPTION, no official numbers** (research §4 found none).
- Text input tokens: ``ceil(len(prompt) / 4)`` (ASSUMPTION: a deterministic stand-in for a tokenizer); image input 0
  (generations take no image); text output 0 [3RD sub2api#3222]. ``complexity`` changes nothing [GUIDE-KO].

Error bodies (research §5): :data:`ERRORS`, each with its source.
"""

import math
import re
from dataclasses import dataclass
from datetime import date

RESEARCH_DATE = date(2026, 11, 27)  # the date the facts were checked
# The date every test runs on: the stand-in answers for it, and the workflow's catalogue checks use
# it too (IMAGE_BATCH_TODAY, set for every test by tests/conftest.py), so no test depends on the day
# it runs.
TODAY = RESEARCH_DATE

FIXED_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")  # order of the captured error message (§5)
QUALITIES = ("low", "medium", "high", "auto")
QUALITIES_PLUS = ("low", "medium", "high", "xhigh", "max", "auto")
BACKGROUNDS = ("transparent", "opaque", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MODERATIONS = ("low", "auto")
COMPLEXITIES = ("low", "medium", "high")
DEFAULT_COMPLEXITY = "high"  # GUIDE-KO
MAX_PROMPT = 32_000  # REF25
MAX_N = 10


@dataclass(frozen=True)
class FlexSizes:
    """WxH rules of the 2.x models (REF25 wording; limits from Azure PR #779 and the community calculator)."""

    multiple: int = 16
    max_ratio: float = 3.0
    max_edge: int = 3840
    min_pixels: int = 655_360
    max_pixels: int = 8_294_400  # 3840x2160


FLEX = FlexSizes()

# Output image tokens of the 1.x family per quality, for 1024x1024 / 1024x1536 / 1536x1024 (research §4).
TOKENS_1X = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
# Factors of the 2.x calculator formula.  low/medium/high: OpenAI's calculator (3RD extraction, research §4).
# xhigh/max: ASSUMPTION (no official numbers exist; continued in steps of 48).
FACTORS = {"low": 16, "medium": 48, "high": 96, "xhigh": 144, "max": 192}


@dataclass(frozen=True)
class ImageModel:
    """One model name as the real API knows it (snapshots are names of their own, with their alias's rules)."""

    name: str
    family: str  # "dall-e", "1.x", "2", "2.5", "2.6"
    released: date | None  # None: before the research window
    shutdown: date | None
    qualities: tuple
    sizes: tuple | None  # the fixed sizes accepted; None: FLEX rules
    backgrounds: tuple = BACKGROUNDS
    complexity: bool = False  # takes the 2.6 "complexity" parameter
    source: str = ""
    max_n: int = MAX_N

    @property
    def gpt(self):
        return self.family != "dall-e"

    def status(self, today):
        """ "current", "retired" or "unreleased" on ``today``."""
        if self.shutdown is not None and today >= self.shutdown:
            return "retired"
        if self.released is not None and today < self.released:
            return "unreleased"
        return "current"


def _models():
    d2, d25, d26 = date(2026, 4, 21), date(2026, 9, 8), date(2026, 11, 4)
    end_1x = date(2026, 12, 1)
    src_1x = "[DEP] developers.openai.com/api/docs/deprecations (undated, post 2026-11-04): shutdown 2026-12-01"
    one = {"family": "1.x", "released": None, "shutdown": end_1x, "qualities": QUALITIES, "sizes": FIXED_SIZES}
    two = {"family": "2", "released": d2, "shutdown": None, "qualities": QUALITIES, "sizes": None}
    two["backgrounds"] = ("opaque", "auto")
    src_2 = "OFFICIAL developers.openai.com/api/docs/models/gpt-image-2.md (undated): snapshot gpt-image-2-2026-04-21"
    g25 = {"family": "2.5", "released": d25, "shutdown": None, "qualities": QUALITIES_PLUS, "sizes": None}
    src_25 = "[REF25] openai-java openapi spec (post 2026-09-08); 3RD apiyi 2026-09-09"
    g26 = {**g25, "family": "2.6", "released": d26, "complexity": True}
    src_26 = "3RD apiyi/apidog 2026-11-05; OFFICIAL [M-26S] (no dated snapshot); complexity: GUIDE-KO"
    # Order: the SDK's own list of supported models (openai 3.54.0 images.generate docstring), then the retired ones.
    return (
        ImageModel("gpt-image-1-mini", **one, source=src_1x),
        ImageModel("gpt-image-1.5", **one, source=src_1x),
        ImageModel("gpt-image-1.5-2025-12-16", **one, source=src_1x),
        ImageModel("gpt-image-2", **two, source=src_2),
        ImageModel("gpt-image-2-2026-04-21", **two, source=src_2),
        ImageModel("gpt-image-2.5-sunburst", **g25, source=src_25),
        ImageModel("gpt-image-2.5-sunburst-2026-09-08", **g25, source=src_25),
        ImageModel("gpt-image-2.5-flare", **g25, source=src_25),
        ImageModel("gpt-image-2.5-flare-2026-09-08", **g25, source=src_25),
        ImageModel("gpt-image-2.6-sunburst", **g26, source=src_26),
        ImageModel("gpt-image-2.6-flare", **g26, source=src_26),
        ImageModel("chatgpt-image-latest", **one, source=src_1x),
        ImageModel(
            "gpt-image-1",
            **{**one, "shutdown": date(2026, 10, 23)},
            source="OFFICIAL ja-JP models/gpt-image-1 (post 2026-10-23); 3RD apiyi 2026-10-24",
        ),
        ImageModel(
            "dall-e-3",
            "dall-e",
            None,
            date(2026, 5, 12),
            ("standard", "hd"),
            ("1024x1024", "1792x1024", "1024x1792"),
            (),
            source="OFFICIAL API reference 'retired on May 12, 2026'",
            max_n=1,
        ),
        ImageModel(
            "dall-e-2",
            "dall-e",
            None,
            date(2026, 5, 12),
            ("standard",),
            ("256x256", "512x512", "1024x1024"),
            (),
            source="OFFICIAL API reference 'retired on May 12, 2026'",
        ),
    )


MODELS = {model.name: model for model in _models()}


def current_models(today=RESEARCH_DATE, allowed=None):
    """Names of the models answering on ``today`` (table order), within ``allowed`` when given."""
    return [
        name
        for name, model in MODELS.items()
        if model.status(today) == "current" and (allowed is None or name in allowed)
    ]


# -- error bodies ----------------------------------------------------------------------------------------------------

# name -> (status, type, code, param, message, source).  "{x}" parts are filled in per request.
ERRORS = {
    "billing_hard_limit_reached": (
        400,
        "invalid_request_error",
        "billing_hard_limit_reached",
        None,
        "Billing hard limit has been reached",
        "dfinke/PowerShellAI#127 2023-05-02; status 400 in all-in-aigc/aiwallpaper#2 2024-08-01 (no 2026 capture)",
    ),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        None,
        "You exceeded your current quota, please check your plan and billing details. For more information on this "
        "error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "3RD test fixture (find_string id 60147320478); long-standing OpenAI text; type/code not re-verified",
    ),
    "moderation_blocked": (
        400,
        "image_generation_user_error",
        "moderation_blocked",
        None,
        "Your request was rejected by the safety system. If you believe this is an error, contact us at "
        "help.openai.com and include the request ID {request_id}. safety_violations=[{categories}].",
        "ucx0204/CarrotMangaTranslator#122 2026-09-20, plus moderation_details {moderation_stage, categories}",
    ),
    "model_not_found": (
        404,
        "invalid_request_error",
        "model_not_found",
        None,
        "The model `{model}` does not exist or you do not have access to it.",
        "fixtures and logs (find_string id 7185244028)",
    ),
    "model_deprecated": (
        404,
        "invalid_request_error",
        "model_not_found",
        None,
        "The model `{model}` has been deprecated, learn more here: https://platform.openai.com/docs/deprecations",
        "M1kep/ComfyUI-KepOpenAI#5 2024-07-27 (chat endpoint, historic retired-model answer)",
    ),
    "retired_model": (
        400,
        "invalid_request_error",
        "invalid_value",
        "model",
        "Invalid value: '{model}'. Supported values are: {supported}.",
        "UNVERIFIED for /images/generations: style of the captured 400 on /v1/images/edits (find_string id "
        "58571477901, 2026) and of OpenAI's enumeration errors",
    ),
    "invalid_size_fixed": (
        400,
        "invalid_request_error",
        "invalid_value",
        "size",
        "Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.",
        "pollinations/pollinations#5037 2025-11-05 (may be via Azure)",
    ),
    "invalid_size_multiple": (
        400,
        "invalid_request_error",
        "invalid_value",
        "size",
        "Invalid size '{size}'. Width and height must both be divisible by 16.",
        "jezweb/claude-skills PR #91 2026-05-13 (gpt-image-2)",
    ),
    "rate_limit_images": (
        429,
        "images",
        "rate_limit_exceeded",
        None,
        "Rate limit exceeded for images per minute in organization {org}. Limit: {limit}/{window}. "
        "Current: {current}/{window}. Please try again in {wait}.",
        "chatboxai/chatbox#1361 2024-05-16 (DALL-E era, text after 'Current' not captured; type 'images' ASSUMED)",
    ),
}
# Messages written in the same style where no capture exists (research §5: "not found").
STYLE_ONLY = {
    "size_ratio": "Invalid size '{size}'. The aspect ratio must be between 1:3 and 3:1.",
    "size_edge": "Invalid size '{size}'. Width and height must both be at most {max_edge} pixels.",
    "size_pixels": "Invalid size '{size}'. The total number of pixels must be between {min_pixels} and {max_pixels}.",
    "size_format": "Invalid size '{size}'. Expected 'auto' or 'WIDTHxHEIGHT', for example '1536x864'.",
    "transparent_format": "Transparent backgrounds need output_format 'png' or 'webp', not '{output_format}'.",
    "png_compression": "Compression less than 100 is not supported for PNG output format.",
}
ORGANIZATION = "org-standin"  # what rate-limit messages name as the organization


def error_body(message, type_="invalid_request_error", code=None, param=None, **extra):
    """OpenAI's error envelope; ``extra`` keys (e.g. moderation_details) go inside ``error``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def known_error(name, **values):
    """(status, body) of the ERRORS entry ``name`` with its ``{x}`` parts filled from ``values``."""
    status, type_, code, param, message, _source = ERRORS[name]
    return status, error_body(message.format(**values), type_, code, param)


def listing(values):
    """OpenAI's enumeration: "'a'", "'a' and 'b'", "'a', 'b', and 'c'"."""
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def moderation_error(request_id, categories=("sexual",), stage="input"):
    status, type_, code, param, message, _source = ERRORS["moderation_blocked"]
    text = message.format(request_id=request_id, categories=", ".join(categories))
    details = {"moderation_stage": stage, "categories": list(categories)}
    return status, error_body(text, type_, code, param, moderation_details=details)


def retired_error(model, answer, supported):
    """(status, body) for a retired ``model``: ``answer`` is "invalid_value", "model_not_found" or "deprecated"."""
    if answer == "invalid_value":
        return known_error("retired_model", model=model, supported=listing(supported))
    return known_error("model_deprecated" if answer == "deprecated" else "model_not_found", model=model)


RETIRED_ANSWERS = ("invalid_value", "model_not_found", "deprecated")


# -- tokens ----------------------------------------------------------------------------------------------------------


def formula_tokens(factor, width, height):
    """OpenAI's gpt-image-2 calculator (research §4): output image tokens of one image."""
    long, short = max(width, height), min(width, height)
    steps = (2 * factor * short + long) // (2 * long)
    return math.ceil(factor * steps * (2_000_000 + width * height) / 4_000_000)


def output_image_tokens(model, quality, width, height):
    """Output image tokens of one image of ``model`` (an ImageModel) at a resolved quality and size."""
    if model.family == "1.x":
        return TOKENS_1X[quality][f"{width}x{height}"]
    return formula_tokens(FACTORS[quality], width, height)


def text_tokens(prompt):
    """Text input tokens of ``prompt``: ceil(characters / 4) (ASSUMPTION, see the module docstring)."""
    return math.ceil(len(prompt) / 4)


USAGE_SHAPES = ("details", "no_details")


def usage(settings, prompt, shape="details"):
    """The ``usage`` object of an accepted request (None for dall-e models, which report none)."""
    if not settings.model.gpt:
        return None
    text = text_tokens(prompt)
    image = settings.n * output_image_tokens(settings.model, settings.quality, settings.width, settings.height)
    answer = {
        "input_tokens": text,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": text},
        "output_tokens": image,
        "output_tokens_details": {"image_tokens": image, "text_tokens": 0},
        "total_tokens": text + image,
    }
    if shape == "no_details":
        del answer["output_tokens_details"]
    return answer


# -- validation ------------------------------------------------------------------------------------------------------

# Body fields the real API knows for GPT image models (SDK images.generate); "complexity" only on 2.6.
GPT_PARAMS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "quality",
        "size",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "stream",
        "partial_images",
        "user",
        "safety_identifier",
        "frame_count",
        "frame_duration_ms",
        "svg",
    }
)
DALLE_PARAMS = frozenset({"prompt", "model", "n", "quality", "size", "response_format", "style", "user"})


@dataclass(frozen=True)
class Settings:
    """What an accepted request makes: the model and every setting resolved (auto -> what is used)."""

    model: ImageModel
    n: int
    quality: str | None
    width: int
    height: int
    background: str | None
    output_format: str | None
    complexity: str | None = None
    response_format: str = "b64_json"

    @property
    def size(self):
        return f"{self.width}x{self.height}"


class Refusal(Exception):
    """A request the real API refuses: ``status`` and ``body``."""

    def __init__(self, status, body):
        super().__init__(body["error"]["message"])
        self.status, self.body = status, body


def _bad(message, param, code="invalid_value", status=400):
    return Refusal(status, error_body(message, code=code, param=param))


_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "an array"))


def _json_type(value):
    if value is None:
        return "null"
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return "an object"


def _choice(body, name, values, default):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad(
            f"Invalid type for '{name}': expected one of {listing(values)}, but got {_json_type(value)} instead.",
            name,
            "invalid_type",
        )
    if value not in values:
        raise _bad(f"Invalid value: '{value}'. Supported values are: {listing(values)}.", name)
    return value


def _integer(body, name, low, high, default):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(
            f"Invalid type for '{name}': expected an integer, but got {_json_type(value)} instead.",
            name,
            "invalid_type",
        )
    if value < low:
        raise _bad(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if value > high:
        raise _bad(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return value


_SIZE = re.compile(r"(\d+)x(\d+)")


def _size(model, value):
    """(width, height) made for the requested ``value`` (None: "auto"), or a Refusal."""
    if value is None or value == "auto":
        return 1024, 1024  # ASSUMPTION: what "auto" makes
    if not isinstance(value, str):
        raise _bad(f"Invalid type for 'size': expected a string, but got {_json_type(value)} instead.", "size")
    if model.sizes is not None:
        if value not in model.sizes:
            if model.sizes == FIXED_SIZES:
                raise Refusal(*known_error("invalid_size_fixed", size=value))
            raise _bad(f"Invalid value: '{value}'. Supported values are: {listing(model.sizes)}.", "size")
        width, height = map(int, value.split("x"))
        return width, height
    match = _SIZE.fullmatch(value)
    if not match:
        raise _bad(STYLE_ONLY["size_format"].format(size=value), "size")
    width, height = int(match[1]), int(match[2])
    if width % FLEX.multiple or height % FLEX.multiple or not width or not height:
        raise Refusal(*known_error("invalid_size_multiple", size=value))
    if max(width, height) > FLEX.max_edge:
        raise _bad(STYLE_ONLY["size_edge"].format(size=value, max_edge=FLEX.max_edge), "size")
    if max(width, height) > FLEX.max_ratio * min(width, height):
        raise _bad(STYLE_ONLY["size_ratio"].format(size=value), "size")
    if not FLEX.min_pixels <= width * height <= FLEX.max_pixels:
        raise _bad(
            STYLE_ONLY["size_pixels"].format(size=value, min_pixels=FLEX.min_pixels, max_pixels=FLEX.max_pixels),
            "size",
        )
    return width, height


def resolve_model(name, today=RESEARCH_DATE, allowed=None, retired_answer="invalid_value"):
    """The ImageModel answering to ``name`` on ``today``, or a Refusal: retired ones per ``retired_answer``, unknown,
    not yet released and not ``allowed`` ones with 404 model_not_found."""
    if not isinstance(name, str):
        raise _bad(f"Invalid type for 'model': expected a string, but got {_json_type(name)} instead.", "model")
    model = MODELS.get(name)
    if model is None or model.status(today) == "unreleased" or (allowed is not None and name not in allowed):
        raise Refusal(*known_error("model_not_found", model=name))
    if model.status(today) == "retired":
        raise Refusal(*retired_error(name, retired_answer, current_models(today, allowed)))
    return model


def check(body, today=RESEARCH_DATE, allowed=None, default_model="dall-e-2", retired_answer="invalid_value"):
    """Settings for an images/generations ``body`` (a dict), or raise the Refusal the real API would answer.

    ``allowed``: model names the account may use (None: all); ``default_model``: what an omitted model means."""
    if "prompt" not in body:
        raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise _bad(f"Invalid type for 'prompt': expected a string, but got {_json_type(prompt)} instead.", "prompt")
    if not prompt:
        raise _bad("Invalid 'prompt': empty string. Expected a string with minimum length 1.", "prompt", "empty_string")
    if len(prompt) > MAX_PROMPT:
        raise _bad(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT}, but got a "
            f"string with length {len(prompt)} instead.",
            "prompt",
            "string_above_max_length",
        )
    model = resolve_model(default_model if body.get("model") is None else body["model"], today, allowed, retired_answer)
    known = (GPT_PARAMS | ({"complexity"} if model.complexity else set())) if model.gpt else DALLE_PARAMS
    for name in body:
        if name not in known:
            raise _bad(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    n = _integer(body, "n", 1, model.max_n, 1)
    if not model.gpt:
        quality = _choice(body, "quality", model.qualities, "standard")
        width, height = _size(model, body.get("size"))
        fmt = _choice(body, "response_format", ("url", "b64_json"), "url")
        _choice(body, "style", ("vivid", "natural"), None)
        return Settings(model, n, quality, width, height, None, None, response_format=fmt)
    quality = _choice(body, "quality", model.qualities, "auto")
    width, height = _size(model, body.get("size"))
    background = _choice(body, "background", model.backgrounds, "auto")
    output_format = body.get("output_format")
    if output_format in ("gif", "svg") and model.family == "2.6":
        message = f"Invalid value: '{output_format}'. Output format '{output_format}' requires preview access."
        raise _bad(message, "output_format")
    output_format = _choice(body, "output_format", OUTPUT_FORMATS, "png")
    compression = _integer(body, "output_compression", 0, 100, None)
    if output_format == "png" and compression is not None and compression < 100:
        raise _bad(STYLE_ONLY["png_compression"], "output_compression")
    _choice(body, "moderation", MODERATIONS, "auto")
    complexity = _choice(body, "complexity", COMPLEXITIES, DEFAULT_COMPLEXITY) if model.complexity else None
    if background == "transparent" and output_format not in ("png", "webp"):
        raise _bad(STYLE_ONLY["transparent_format"].format(output_format=output_format), "background")
    if body.get("stream"):
        raise _bad("The stand-in does not stream: send stream=false (or leave it out).", "stream")
    _integer(body, "partial_images", 0, 3, 0)
    for name, needs in (("frame_count", "gif"), ("frame_duration_ms", "gif"), ("svg", "svg")):
        if body.get(name) is not None:
            raise _bad(f"'{name}' is only supported with output_format '{needs}'.", name)
    return Settings(
        model,
        n,
        "medium" if quality == "auto" else quality,
        width,
        height,
        "transparent" if background == "transparent" else "opaque",
        output_format,
        complexity,
    )


# -- the Responses API (chat models that write prompts: Image.Batch's describe:) ---------------------------------------

# Chat models this account answers on /v1/responses. gpt-5.4-mini: announced March 2026, $0.75 / $4.50 per million
# input / output tokens (3RD dev.to/preecha and apidog.com 2026-03-20, quoting OpenAI's pricing page; checked
# 2026-12-04). The workflow's catalogue lists it with kind: text (tests/test_catalogue_vs_stand_in.py compares).
TEXT_MODELS = {"gpt-5.4-mini": "3RD dev.to/preecha, apidog.com 2026-03-20"}


def written_prompt(text):
    """The stand-in's chat model: deterministic, and blind to trailing punctuation and whitespace (ASSUMPTION: so a
    test can edit a description without changing the prompt written from it)."""
    return f"A detailed photo of {text.strip().rstrip('.!?;, ').strip()}, natural light, sharp focus"


def check_responses(body):
    """The Refusal /v1/responses gives for ``body`` (a dict), else None. Messages and codes as the real API's
    (OFFICIAL API reference; a missing model: 400 'model_not_found', param model, ASSUMPTION from its error shape)."""
    model = body.get("model")
    if not model:
        return _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if model not in TEXT_MODELS:
        return Refusal(
            400,
            error_body(f"The requested model '{model}' does not exist.", code="model_not_found", param="model"),
        )
    if not isinstance(body.get("input"), str) or not body["input"]:
        return _bad("Invalid 'input': expected a non-empty string.", "input")
    return None


def responses_answer(body, response_id, created):
    """A completed Responses answer (the real JSON shape: output message with one output_text part; usage with
    input_tokens, output_tokens and their details). Tokens: ``ceil(chars / 4)`` (ASSUMPTION, as for images)."""
    text = written_prompt(body["input"])
    tokens_in = math.ceil((len(body.get("instructions") or "") + len(body["input"])) / 4)
    tokens_out = math.ceil(len(text) / 4)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "model": f"{body['model']}-2026-03-17",
        "output": [
            {
                "type": "message",
                "id": "msg_" + response_id[5:],
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        ],
        "parallel_tool_calls": True,
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out,
        },
        "user": None,
        "metadata": {},
    }
