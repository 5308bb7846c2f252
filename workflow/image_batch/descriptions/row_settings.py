"""Per-row settings and variants: the optional sheet columns that override the config for one row.

Setting columns (``provider``, ``model``, ``size``, ``quality``, ``background``, ``output_format``,
``moderation``, ``output_compression``, ``complexity``, ``aspect_ratio``, ``image_size``): a cell
overrides the row's provider's config section for that row only; an empty cell keeps the config's
value. The row's request is the provider's own ``request_params`` of that section with the cells on
top, read as ``--config`` reads them (so a size cell "1536x1024" makes exactly the request of
``--config 'openai={size: 1536x1024}'``: same request file, same response-store key). A cell naming
a setting its provider does not take is a sheet error. Rows share few distinct settings: each
distinct (provider, cells) is built and checked once.

``variants`` (column, or the config default): N images of a row. The first is ``<image_id>`` with
exactly the row's request; candidate k >= 2 is ``<image_id>-k``, whose request gains
``"candidate": k`` (its own identity: its own request file, store key, sidecar and cost) and whose
spec names its ``row``. At most :data:`MAX_VARIANTS`. An id that a variant would take from another
row (row ``x`` with 2 variants and a row ``x-2``) is refused: ids are unique in the whole sheet.
"""

import copy
import functools

from image_batch.common.errors import UserError

# column -> the providers whose config section has that setting (others refuse the cell)
SETTING_COLUMNS = (
    "provider",
    "model",
    "size",
    "quality",
    "background",
    "output_format",
    "moderation",
    "output_compression",
    "complexity",
    "aspect_ratio",
    "image_size",
)
VARIANTS = "variants"
COLUMNS = SETTING_COLUMNS + (VARIANTS,)
MAX_VARIANTS = 100
NUMBERS = (VARIANTS, "output_compression")  # columns a workbook may hold as numbers (read as the number)
MAX_ID_CHARS = 128  # as for a row's own image_id (workflow/schemas/images.schema.yaml)
CANDIDATE = "candidate"  # the request field of candidate k >= 2 (not ``variant``: that is the re-roll string)
# settings of a section that are not an image's (how to call, not what to ask)
_NOT_ROW_SETTINGS = {"timeout", "requests_per_minute", "max_retries", "extra_body"}


@functools.lru_cache(maxsize=1)
def _schema():
    from image_batch.common.settings import _schema as config_schema

    return config_schema()


def _section_schema(provider):
    return (_schema()["properties"].get(provider) or {}).get("properties") or {}


def takes(provider):
    """The setting columns a provider's rows may set: its config section's image settings."""
    return {name for name in _section_schema(provider) if name not in _NOT_ROW_SETTINGS}


def _paid(provider):
    from image_batch.providers import provider_class

    try:
        return provider_class(provider).paid
    except UserError:
        return False  # refused with its row and column when the row's request is built


class RowRequests:
    """The request fields of each row, from the config and the row's cells; built once per
    distinct (provider, cells) combination."""

    def __init__(self, settings, default_provider, environ=None, placeholders=False):
        self.settings = settings
        self.default_provider = default_provider
        # no API key at all (provider auto, so placeholders), or provider: offline in the config: a
        # row's paid provider makes a placeholder too, like every other row (the keyless estimate
        # prices it at its own provider)
        self.placeholders = placeholders
        self.environ = environ
        self.default_params = None  # the request fields of a row without cells (set by build_specs)
        self.default_used = False  # whether some row has no cells (its request is the config's)
        self._params = {}  # (provider, cells) -> (params or None, problems as (column, text))
        self.first_row = {}  # (provider, cells) -> the first row that asked for it (checks name it)
        self.rows = {}  # (provider, cells) -> how many rows asked for it
        self._keys = {}  # a row's cells as read -> its (provider, cells), or "default"

    def of(self, row):
        """(provider, params, problems) for ``row``: problems are (column, text)."""
        key = self._keys.get(row.settings)  # rows share few distinct cells: one look-up for most
        if key is None:
            key = self._keys[row.settings] = self._key(row)
        if key == "default":
            self.default_used = True
            return self.default_provider, self.default_params, []
        if key not in self._params:
            self._params[key] = self._build(key[0], dict(key[1]))
            self.first_row[key] = row
        self.rows[key] = self.rows.get(key, 0) + 1
        params, problems = self._params[key]
        return key[0], params, problems

    def _key(self, row):
        cells = dict(row.settings)
        cells.pop(VARIANTS, None)
        provider = (cells.pop("provider", None) or self.default_provider).strip().lower()
        if self.placeholders and provider != self.default_provider and _paid(provider):
            provider = self.default_provider
        if not cells and provider == self.default_provider and self.default_params is not None:
            return "default"
        return (provider, tuple(sorted(cells.items())))

    def _build(self, provider, cells):
        from image_batch.common.settings import _coerce
        from image_batch.providers import provider_class

        try:
            cls = provider_class(provider)
        except UserError:
            return None, [("provider", f"provider {provider!r} is not one Image.Batch knows (openai, gemini, offline)")]
        section = self.settings.section(provider)
        if not cls.paid:
            # placeholders (no key: the paid provider's request is built and checked beside them):
            # the settings a placeholder has no use for are left out, not refused
            cells = {name: value for name, value in cells.items() if name in takes(provider)}
        if not cells:
            try:
                return cls.request_params(section, self.environ), []
            except UserError as exc:
                return None, [("provider", str(exc))]
        taken = takes(provider)
        problems = []
        for column in sorted(cells):
            if column not in taken:
                some = ", ".join(sorted(taken)) or "none"
                problems.append(
                    (column, f"the {provider} provider does not take {column} (its rows take: {some}); empty the cell")
                )
        if problems:
            return None, problems
        schema = {"type": "object", "properties": {c: _section_schema(provider)[c] for c in cells}}
        values = _coerce(dict(cells), schema)
        import jsonschema

        for error in jsonschema.Draft202012Validator(schema).iter_errors(values):
            column = error.path[0] if error.path else next(iter(cells))
            sub = schema["properties"].get(column) or {}
            if sub.get("enum"):
                fix = "use one of: " + ", ".join(str(v) for v in sub["enum"] if v is not None)
            else:
                fix = "use " + " or ".join(str(t) for t in _kinds(sub) if t != "null")
                if "minimum" in sub and "maximum" in sub:  # a number out of range: say the range
                    fix += f" from {sub['minimum']} to {sub['maximum']}"
            problems.append((column, f"{cells[column]!r} is not a value {provider}.{column} takes; {fix}"))
        if problems:
            return None, problems
        section.update(values)
        if section.get("output_compression") is not None and section.get("output_format") not in ("jpeg", "webp"):
            # as the config is checked (common.settings): the API refuses it otherwise
            column = "output_compression" if "output_compression" in cells else "output_format"
            problems.append(
                (
                    column,
                    f"output_compression is taken only with output_format jpeg or webp, not "
                    f"{section.get('output_format') or 'png (the default)'}; set output_format to jpeg or webp in "
                    "the row (or the config), or empty output_compression",
                )
            )
            return None, problems
        try:
            return cls.request_params(copy.deepcopy(section), self.environ), []
        except UserError as exc:
            return None, [(next(iter(cells)), str(exc))]

    def combinations(self):
        """[(provider, cells dict, first row, params, rows)] of every distinct combination that built
        (``rows``: how many rows share it)."""
        out = []
        for key, (params, _) in self._params.items():
            if params is not None:
                out.append((key[0], dict(key[1]), self.first_row[key], params, self.rows[key]))
        return out


def _kinds(sub):
    kinds = sub.get("type") or []
    kinds = [kinds] if isinstance(kinds, str) else kinds
    words = {"integer": "a whole number", "number": "a number", "string": "text"}
    return [words.get(k, k) for k in kinds]


def variants_of(row, default):
    """(N, problem or None) for a row's ``variants`` cell (empty: ``default``)."""
    text = next((value for column, value in row.settings if column == VARIANTS), "")
    if not text:
        return default, None
    try:
        count = int(text.strip())
    except ValueError:
        return 1, f"variants {text!r} is not a whole number; give how many images of this row to make (1 to 100)"
    if count < 1 or count > MAX_VARIANTS:
        return 1, f"variants {count} is out of range; give a whole number from 1 to {MAX_VARIANTS}"
    return count, None


def variant_id(image_id, k):
    """The image id of candidate ``k`` of a row (k = 1: the row's own id)."""
    return image_id if k == 1 else f"{image_id}-{k}"


def collisions(rows, counts, unit="line"):
    """Problems for a variant id that is another row's id (ids compare without case, as the sheet
    does): ``counts`` is {image_id: N}."""
    owner = {row.image_id.lower(): row for row in rows}
    problems = []
    for row in rows:
        count = counts.get(row.image_id, 1)
        if count > 1 and len(variant_id(row.image_id, count)) > MAX_ID_CHARS:
            problems.append(
                f"{row.place}, column {VARIANTS}: variant {count} of row {row.image_id!r} would have an id longer "
                f"than {MAX_ID_CHARS} characters; shorten the image_id"
            )
        for k in range(2, count + 1):
            other = owner.get(variant_id(row.image_id, k).lower())
            if other is not None and other is not row:
                problems.append(
                    f"{row.place}, column {VARIANTS}: variant {k} of row {row.image_id!r} would be image "
                    f"{variant_id(row.image_id, k)!r}, the id of the row on {other.place}; rename that row or "
                    "ask for fewer variants"
                )
    return problems


def where(settings, provider, cells):
    """For the catalogue's messages: where a setting was made (the row's cell, or the config)."""

    def origin(setting):
        if setting in cells:
            return "in its cell"
        return settings.origin(provider, setting)

    return origin


def overridden(settings, row_requests, sheet):
    """Warnings for settings given on the command line (--config, main.py's --model, --size,
    --quality) that rows set in their own cells: the cell wins, so a `--quality low` draft run still
    pays for a row's `high` (one line per setting, with how many rows and the first one)."""
    found = {}  # (provider, column) -> [rows, first place]
    for provider, cells, row, _, count in row_requests.combinations():
        for column in cells:
            if settings.origin(provider, column) == "given on the command line":
                entry = found.setdefault((provider, column), [0, f"{sheet}, {row.place}"])
                entry[0] += count
    return [
        f"{provider}.{column} given on the command line is not used for {count} row(s) with a {column} cell of "
        f"their own (e.g. {place}): a row's cell wins; empty those cells to use it"
        for (provider, column), (count, place) in sorted(found.items())
    ]
