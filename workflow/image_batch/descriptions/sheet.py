"""The descriptions stage: read the input sheet (CSV) and validate it into rows.

Spreadsheet exports are accepted as they come: UTF-8 with or without BOM, CRLF or LF, spaces after
commas, quoted fields (commas, doubled quotes, line breaks), blank lines, extra columns (ignored).
Every problem is collected and reported at once, each with file, line and column.
"""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import fastjsonschema
import jsonschema
import yaml

from image_batch.common.errors import SheetError
from image_batch.common.slug import context_folder

COLUMNS = ("image_id", "context", "description")
MAX_FOLDER_CHARS = 100
OPTIONAL_COLUMNS = ("variant",)  # per-row: any new value asks for a fresh image of that row
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "images.schema.yaml"


@dataclass(frozen=True)
class Row:
    line: int  # line in the file where the record starts (1 = header)
    image_id: str
    context: str
    folder: str
    description: str
    variant: str = ""


def _load_schema(max_description_chars):
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    if max_description_chars:
        schema["properties"]["description"]["maxLength"] = int(max_description_chars)
    return schema


def _decode(path, data):
    """Bytes -> text, or a problem naming the line of the first undecodable byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, (
            f"line {line}: text is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "export the sheet as 'CSV UTF-8'"
        )


def read_sheet(path, max_description_chars=32000):
    """Parse and validate ``path``.  Returns a list of :class:`Row` or raises :class:`SheetError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise SheetError(path, [f"cannot read the file: {getattr(exc, 'strerror', None) or exc}"])
    text, problem = _decode(path, data)
    if problem:
        raise SheetError(path, [problem])
    if not text.strip():
        raise SheetError(path, ["the file is empty; expected a header line: image_id,context,description"])

    # strict: an unclosed quote is an error, not a description that swallows the rows after it
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    problems = []
    try:
        header, header_line = None, 0
        for record in reader:
            header_line = reader.line_num
            if any(cell.strip() for cell in record):
                header = [cell.strip().lower() for cell in record]
                break
        if header is None:
            raise SheetError(path, ["the file has no header line: expected image_id,context,description"])
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SheetError(
                path,
                [
                    f"line {header_line}: missing column(s) {', '.join(repr(m) for m in missing)}; "
                    f"the header must name {', '.join(COLUMNS)} (found: {', '.join(header)})"
                ],
            )
        index = {c: header.index(c) for c in COLUMNS + OPTIONAL_COLUMNS if c in header}
        raw_rows = []
        prev_end = reader.line_num
        for record in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # blank line, or an empty spreadsheet row like ",,"
            if len(record) > len(header) and any(cell.strip() for cell in record[len(header) :]):
                problems.append(
                    f"line {start}: {len(record)} values but the header has {len(header)} columns; "
                    'quote a description that contains commas, e.g. "red, white and blue"'
                )
                continue
            # line breaks inside a cell as "\n", whatever the export used, so a re-export with other
            # line endings does not change the prompt (and so the request, and what is paid for)
            values = {c: (record[i].strip().replace("\r\n", "\n") if i < len(record) else "") for c, i in index.items()}
            values.setdefault("variant", "")
            raw_rows.append((start, values))
    except csv.Error as exc:
        raise SheetError(path, [f"line {reader.line_num}: not valid CSV: {exc}"])

    schema = _load_schema(max_description_chars)
    fast_check = fastjsonschema.compile(schema)  # compiled once: most rows are valid, check them fast
    validator = jsonschema.Draft202012Validator(schema)  # every detailed error, for the rows that fail
    props = schema["properties"]
    rows = []
    for line, values in raw_rows:
        bad_columns = set()
        for column in COLUMNS + OPTIONAL_COLUMNS:
            if "\x00" in values[column]:
                problems.append(f"line {line}, column {column}: contains a NUL byte")
                bad_columns.add(column)
        try:
            fast_check(values)
            errors = []
        except fastjsonschema.JsonSchemaException:
            errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
        for err in errors:
            column = err.path[0] if err.path else None
            if column in bad_columns:
                continue
            template = props.get(column, {}).get("x-messages", {}).get(err.validator, err.message)
            value = values.get(column, "")
            msg = template.format(value=value, length=len(value), limit=err.validator_value)
            problems.append(f"line {line}, column {column}: {msg}")
            bad_columns.add(column)
        folder = context_folder(values["context"])
        if len(folder) > MAX_FOLDER_CHARS and "context" not in bad_columns:
            problems.append(
                f"line {line}, column context: context gives a folder name of {len(folder)} characters; "
                f"at most {MAX_FOLDER_CHARS}"
            )
            bad_columns.add("context")
        if values["context"] and "context" not in bad_columns and not folder:
            problems.append(
                f"line {line}, column context: context {values['context']!r} gives an empty folder "
                "name (it needs at least one letter or digit that maps to ASCII)"
            )
            bad_columns.add("context")
        row = Row(line, values["image_id"], values["context"], folder, values["description"], values["variant"])
        rows.append((bad_columns, row))

    problems += _cross_row_problems([(bad, row) for bad, row in rows])
    if problems:
        raise SheetError(path, problems)
    if not rows:
        raise SheetError(path, [f"line {header_line}: the sheet has a header but no rows"])
    return [row for _, row in rows]


def _cross_row_problems(rows):
    """Problems that involve two rows: duplicate ids, two contexts sharing one folder."""
    problems = []
    seen_ids = {}
    folder_owner = {}
    reported = set()
    for bad, row in rows:
        if "image_id" not in bad:
            key = row.image_id.lower()
            if key in seen_ids:
                first = seen_ids[key]
                same = "duplicates" if first.image_id == row.image_id else "differs only in case from"
                problems.append(
                    f"line {row.line}, column image_id: image_id {row.image_id!r} {same} "
                    f"{first.image_id!r} on line {first.line}"
                )
            else:
                seen_ids[key] = row
        if "context" not in bad:
            owner = folder_owner.setdefault(row.folder, row)
            if owner.context != row.context and (owner.context, row.context) not in reported:
                reported.add((owner.context, row.context))
                problems.append(
                    f"line {row.line}, column context: context {row.context!r} maps to folder "
                    f"{row.folder!r}, like context {owner.context!r} on line {owner.line}; "
                    "rename one of them"
                )
    return problems
