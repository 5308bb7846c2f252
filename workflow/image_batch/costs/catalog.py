"""The model catalogue (config/models.yaml): what each model takes, when it shuts down, what it costs.

Read once per process (:func:`load_catalog`). :meth:`Catalog.check` is what a run and a dry run
ask before anything is called: a model that has shut down, or a setting the model does not take,
is refused with the fix; a model shutting down within 30 days is warned about.
"""

import datetime
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from image_batch.common.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "models.schema.yaml"
WARN_DAYS = 30
PRICE_FIELDS = (
    "text_input",
    "cached_text_input",
    "text_output",
    "image_input",
    "cached_image_input",
    "image_output",
)


CLOCK_VARIABLE = "IMAGE_BATCH_TODAY"  # YYYY-MM-DD: the date the catalogue checks use (tests set it)


def today(environ=None):
    """The date a model's status is judged on: today (UTC), unless ``IMAGE_BATCH_TODAY`` names
    another (the tests set it, with the stand-in API answering for the same date, so that no test
    depends on the day it runs)."""
    environ = os.environ if environ is None else environ
    text = (environ.get(CLOCK_VARIABLE) or "").strip()
    if text:
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            raise UserError(f"{CLOCK_VARIABLE}={text!r} is not a date (YYYY-MM-DD)") from None
    return datetime.datetime.now(datetime.UTC).date()


def _as_text(value):
    """YAML reads 2026-11-04 as a date: dates become ISO strings, everywhere."""
    if isinstance(value, dict):
        return {str(k): _as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def _date(text):
    return datetime.date.fromisoformat(text) if text else None


def parse_size(size):
    """(width, height) of "WxH", else None."""
    parts = str(size or "").lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    source: str
    released: datetime.date | None = None
    announced: datetime.date | None = None
    shutdown: datetime.date | None = None
    replacement: str | None = None
    qualities: tuple | None = None
    sizes: str | None = None  # the name of a size rule
    backgrounds: tuple | None = None
    output_formats: tuple | None = None
    complexity: tuple | None = None
    aspect_ratios: tuple | None = None  # Gemini: image_config.aspect_ratio values taken
    image_sizes: tuple | None = None  # Gemini: image_config.image_size values taken
    rates: dict = field(default_factory=dict)  # per million tokens
    per_image: dict = field(default_factory=dict)  # quality -> size -> USD
    price_source: str = ""
    token_rule: str | None = None
    tokens_assumed: bool = False
    kind: str = "image"  # or "text": a chat model that writes prompts (describe:)

    def status(self, on=None):
        """("current" | "shutting-down" | "retired", days left or None)."""
        on = on or today()
        if self.shutdown is None:
            return "current", None
        if on >= self.shutdown:
            return "retired", 0
        return "shutting-down", (self.shutdown - on).days


KNOWN_PROVIDERS = {"openai", "gemini"}  # whose models the catalogue tells apart (check: a model of the other)


class Catalog:
    def __init__(self, data, path="config/models.yaml"):
        self.path = str(path)
        self.checked = data["checked"]
        self.providers = data.get("providers") or {}
        self.size_rules = data.get("size_rules") or {}
        self.token_rules = data.get("token_rules") or {}
        self.models = {}
        self.aliases = {}
        raw = data.get("models") or {}
        for name in raw:
            entry = self._resolve(raw, name, set())
            prices = entry.get("prices") or {}
            tokens = entry.get("typical_output_tokens") or {}
            model = Model(
                name=name,
                provider=entry.get("provider", "openai"),
                source=entry.get("source", ""),
                released=_date(entry.get("released")),
                announced=_date(entry.get("announced")),
                shutdown=_date(entry.get("shutdown")),
                replacement=entry.get("replacement"),
                qualities=tuple(entry["qualities"]) if "qualities" in entry else None,
                sizes=entry.get("sizes"),
                backgrounds=tuple(entry["backgrounds"]) if "backgrounds" in entry else None,
                output_formats=tuple(entry["output_formats"]) if "output_formats" in entry else None,
                complexity=tuple(entry["complexity"]) if "complexity" in entry else None,
                aspect_ratios=tuple(entry["aspect_ratios"]) if "aspect_ratios" in entry else None,
                image_sizes=tuple(str(s) for s in entry["image_sizes"]) if "image_sizes" in entry else None,
                rates=dict(prices.get("per_million_tokens") or {}),
                per_image={q: dict(s) for q, s in (prices.get("per_image") or {}).items()},
                price_source=prices.get("source", ""),
                token_rule=tokens.get("rule"),
                tokens_assumed=bool(tokens.get("assumed")),
                kind=entry.get("kind", "image"),
            )
            self.models[name] = model
            for snapshot in entry.get("snapshots") or ():
                self.aliases[snapshot] = name
        for name, model in self.models.items():
            for attr, rules in (("sizes", self.size_rules), ("token_rule", self.token_rules)):
                value = getattr(model, attr)
                if value and value not in rules:
                    raise UserError(f"{self.path}: model {name}: unknown {attr} rule {value!r}")

    @staticmethod
    def _resolve(raw, name, seen):
        entry = dict(raw[name])
        base = entry.pop("same_as", None)
        if base is None:
            return entry
        if base in seen or base not in raw:
            raise UserError(f"model catalogue: {name}: same_as {base!r} is unknown or circular")
        return {**Catalog._resolve(raw, base, seen | {name}), **entry}

    def lookup(self, name):
        """The catalogue entry for model ``name`` (a dated snapshot finds its model), or None."""
        name = str(name or "")
        return self.models.get(name) or self.models.get(self.aliases.get(name, ""))

    def near_misses(self, name, provider=None):
        """Known model names (current ones first) within a typo of ``name``."""
        import difflib

        names = [n for n, m in self.models.items() if provider is None or (m.provider or "openai") == provider]
        names += [a for a, n in self.aliases.items() if n in names]
        found = difflib.get_close_matches(str(name or ""), names, n=3, cutoff=0.88)
        return sorted(found, key=lambda n: (self.lookup(n).status()[0] == "retired", found.index(n)))[:2]

    def batch_discount(self, provider="openai"):
        return float((self.providers.get(provider) or {}).get("batch_discount", 0.5))

    # -- checks -----------------------------------------------------------------------------------

    def check(self, request, on=None, where=None):
        """(problems, warnings) for ``request``'s settings: one line each, naming the fix and where
        the setting was made (``where(setting)``: "in config/config.yaml", "given on the command line")."""
        where = where or (lambda setting: "in config/config.yaml")
        model = self.lookup(request.get("model"))
        name = request.get("model")
        if model is None:
            section = request.get("provider") or "openai"
            near = self.near_misses(name, section)
            letters = re.sub(r"[0-9.]", "", str(name))
            if near and all(re.sub(r"[0-9.]", "", n) != letters for n in near):
                # a name one or two letters from a known model is a typo far more often than a new
                # model: refused before any call (the API would refuse it after the first wave)
                return [
                    f"{section}.model {name!r} is not a model the catalogue knows: did you mean "
                    f"{' or '.join(repr(n) for n in near)}? Change {section}.model {where('model')} (a model "
                    f"of your own endpoint: add it to a catalogue of your own, model_catalog)"
                ], []
            guess = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
            return [], [
                f"model {name!r} is not in the model catalogue ({self.path}){guess}: its settings are not checked "
                "and its cost is reported as unpriced"
            ]
        problems, warnings = [], []
        # settings are named as the user wrote them: openai.size, gemini.image_size, ...
        section = request.get("provider") or model.provider
        if {section, model.provider} <= KNOWN_PROVIDERS and section != model.provider:
            # (a model cell without a provider cell: the other provider's API would refuse every image)
            return [
                f"{section}.model {name!r} is a {model.provider} model, not one the {section} provider serves: "
                f"use provider {model.provider} for it (a row's provider cell, or the config's provider), or change "
                f"{section}.model {where('model')} to a {section} model"
            ], []
        state, days = model.status(on)
        instead = f"e.g. {model.replacement}" if model.replacement else "see the catalogue"
        if state == "retired":
            problems.append(
                f"{section}.model {name!r} was shut down on {model.shutdown} ({model.source}): set {section}.model "
                f"({where('model')}) to a current model, {instead} ({self.path} lists them)"
            )
            return problems, warnings
        if state == "shutting-down" and days <= WARN_DAYS:
            warnings.append(
                f"{section}.model {name!r} shuts down on {model.shutdown}, in {days} day(s): switch to a current "
                f"model before then ({instead}); requests after that date will fail"
            )
        for setting, allowed in (("aspect_ratio", model.aspect_ratios), ("image_size", model.image_sizes)):
            value = request.get(setting)
            if value is not None and allowed is not None and str(value) not in allowed:
                problems.append(self._not_taken(setting, value, name, allowed, where, section))
        quality = request.get("quality")
        if quality is not None and model.qualities is not None and quality not in model.qualities:
            problems.append(self._not_taken("quality", quality, name, model.qualities, where, section))
        size = request.get("size")
        if size is not None and model.sizes:
            problem = self._size_problem(size, name, self.size_rules[model.sizes], where("size"))
            if problem:
                problems.append(problem)
        background = request.get("background")
        if background is not None and model.backgrounds is not None and background not in model.backgrounds:
            problems.append(self._not_taken("background", background, name, model.backgrounds, where, section))
        fmt = request.get("output_format")
        if fmt is not None and model.output_formats is not None and fmt not in model.output_formats:
            problems.append(self._not_taken("output_format", fmt, name, model.output_formats, where, section))
        if background == "transparent" and fmt not in (None, "png", "webp"):
            problems.append(
                f"openai.background 'transparent' needs output_format png or webp, not {fmt!r}: change one of them"
            )
        complexity = request.get("complexity")
        if complexity is not None:
            if not model.complexity:
                problems.append(
                    f"openai.complexity is not taken by {name!r} (only by models that list it in {self.path}): "
                    "set it to null"
                )
            elif complexity not in model.complexity:
                problems.append(self._not_taken("complexity", complexity, name, model.complexity, where, section))
        return problems, warnings

    def _not_taken(self, setting, value, name, allowed, where, section="openai"):
        return (
            f"{section}.{setting} {value!r} is not taken by {name!r} (it takes {', '.join(allowed)}): "
            f"change {section}.{setting} {where(setting)}"
        )

    @staticmethod
    def _size_problem(size, name, rule, where="in config/config.yaml"):
        if size in (rule.get("sizes") or ()):
            return None
        named = ", ".join(rule.get("sizes") or ())
        fix = f"change openai.size {where} (model {name!r} takes "
        if "multiple_of" not in rule:
            return f"openai.size {size!r} is not taken by {name!r}: {fix}{named})"
        dims = parse_size(size)
        if dims is None:
            return f"openai.size {size!r} is not WIDTHxHEIGHT: {fix}WIDTHxHEIGHT or {named})"
        width, height = dims
        step, ratio = rule["multiple_of"], rule.get("max_ratio")
        edge, low, high = rule.get("max_edge"), rule.get("min_pixels"), rule.get("max_pixels")
        why = None
        if width % step or height % step:
            why = f"both sides must be multiples of {step}"
        elif ratio and max(width, height) > ratio * min(width, height):
            why = f"the aspect ratio must be within {ratio:g}:1"
        elif edge and max(width, height) > edge:
            why = f"the longer side must be at most {edge} px"
        elif low and width * height < low:
            why = f"it must have at least {low:,} pixels"
        elif high and width * height > high:
            why = f"it must have at most {high:,} pixels"
        if why:
            limits = [f"both sides multiples of {step}"]
            limits += [f"the longer side at most {edge} px"] if edge else []
            limits += [f"ratio within {ratio:g}:1"] if ratio else []
            limits += [f"{low:,} to {high:,} pixels"] if low and high else []
            return (
                f"openai.size {size!r} is not taken by {name!r}: {why}; {fix}WIDTHxHEIGHT with "
                f"{', '.join(limits)}; or {named})"
            )
        return None

    # -- tokens and prices ------------------------------------------------------------------------

    def typical_output_tokens(self, model_name, quality, size):
        """(tokens, note) the catalogue gives for one image, or (None, why not)."""
        model = self.lookup(model_name)
        if model is None:
            return None, f"model {model_name!r} is not in the catalogue"
        if not model.token_rule:
            return None, f"no typical tokens for {model.name}"
        rule = self.token_rules[model.token_rule]
        note = f"typical tokens of {model.name} ({model.token_rule} rule{', assumed' if model.tokens_assumed else ''})"
        if "table" in rule:
            value = (rule["table"].get(quality) or {}).get(size)
            return (value, note) if value is not None else (None, f"no typical tokens for {quality} {size}")
        factor = (rule["formula"]["factors"]).get(quality)
        dims = parse_size(size)
        if factor is None or dims is None:
            return None, f"no typical tokens for {model.name} {quality} {size}"
        return formula_tokens(factor, *dims), note

    def per_image_price(self, model_name, quality, size):
        model = self.lookup(model_name)
        if model is None:
            return None
        # "default": the price when the request leaves quality or size to the model (Gemini's 1K)
        value = (model.per_image.get(quality or "default") or {}).get(size or "default")
        return float(value) if value is not None else None

    def rates(self, model_name):
        model = self.lookup(model_name)
        return dict(model.rates) if model else {}


def formula_tokens(factor, width, height):
    """gpt-image-2's output tokens for one image (OpenAI's calculator; see config/models.yaml)."""
    longer, shorter = max(width, height), min(width, height)
    steps = (2 * factor * shorter + longer) // (2 * longer)
    return math.ceil(factor * steps * (2_000_000 + width * height) / 4_000_000)


@functools.lru_cache(maxsize=8)
def _load(path, mtime_ns):
    import jsonschema

    try:
        data = _as_text(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the model catalogue: {exc}") from None
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        where = ".".join(str(p) for p in errors[0].path) or "(top level)"
        raise UserError(f"{path}: the model catalogue is not valid at {where}: {errors[0].message}")
    return Catalog(data, path)


def load_catalog(path):
    """The catalogue at ``path``, read and checked once per process (again if the file changes)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise UserError(f"{path}: cannot read the model catalogue: {exc.strerror}") from None
    return _load(str(path), mtime)
