"""The descriptions stage: read the input sheet and validate it into rows.

Formats. The file's name decides: ``.xlsx`` (and ``.xlsm``), ``.xls`` and ``.ods`` are workbooks, read
with pandas (engine ``calamine``, which tells these formats apart by content, and so does this
module): the first visible worksheet, or the one named by config ``input_sheet``. Anything else is
delimited text: ``.tsv`` is tab-separated; other names (``.csv``, ``.txt``, ...) are separated by
config ``csv_delimiter``, whose default ``auto`` takes whichever of ``,`` ``;`` and tab splits the
header line into the required columns (a European Excel export uses ``;``). Header names are
matched forgivingly (case, surrounding spaces, ``Image ID`` and ``image-id`` for ``image_id``);
messages name a column as the header spells it.

Text is read with Python's csv module rather than pandas' C parser. It is exact where pandas is
not: ``line_num`` gives the line each record starts on even after a quoted cell with line breaks
(pandas numbers records, not lines); every record is read, so all problems (a row with more values
than the header, ...) are reported at once (pandas stops at the first bad line, or skips it);
strict mode refuses an unclosed quote instead of letting it swallow the rows after it. And it is
fast: 10,000 rows in about 0.1 s, most of it the checks (benchmarks/sheet_read.py).

Text exports are accepted as they come: UTF-8 with or without BOM, CRLF or LF, spaces after
delimiters, quoted fields (delimiters, doubled quotes, line breaks), blank lines, extra columns
(ignored). Line breaks inside a cell become ``\\n`` whatever the file used. Every problem is
collected and reported at once with its place: ``line 7, column image_id: ...`` in text,
``sheet 'Images', row 7, column image_id: ...`` (the spreadsheet's own row numbers) in a workbook.

Cells a spreadsheet turned into numbers or dates. A workbook keeps a value, not what was typed:
``001`` typed into an ordinary cell is stored as the number 1, ``3-4`` as a date. In the columns
image_id, context, description and variant such a cell is read as the text it shows only where the
file records that text reliably, and refused otherwise ("format the column as Text and retype it");
it is never silently changed:

- ``.ods`` stores the text each cell shows beside its value: numbers (also percentages and
  currency) are read as shown, e.g. ``001`` for a 1 formatted with leading zeros.
- ``.xlsx`` stores the value and a number format. A whole number in the General (or ``0``, or Text)
  format is read as its digits: that is exactly what Excel shows and what it writes when it saves
  the sheet as CSV, so the workbook and its CSV export make the same images. Every other number is
  refused: a format such as ``000`` shows leading zeros the file does not keep, decimals and
  thousands separators depend on the format, and General shows more than 11 digits as 1.2E+11.
- ``.xls``: the reader does not see number formats, so every number is refused (or save as .xlsx).
- dates, times, TRUE/FALSE and error values (``#N/A``) are refused in every workbook: what was
  typed is lost.

Why plain whole numbers are accepted: a catalogue with ids 1..500 typed as numbers shows 1..500,
and its CSV export says 1..500; refusing would make its owner retype 500 cells. The leading zeros of
``001`` typed into an ordinary cell are lost when typing (or when Excel opens a CSV), before the
file is written: no reader can see that, and a CSV export carries the same loss. Whoever needs
leading zeros formats the column as Text before typing or pasting; a cell that only shows them
through a number format is refused.
"""

import csv
import dataclasses
import datetime
import difflib
import io
import numbers
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import fastjsonschema
import jsonschema
import yaml

from image_batch.common.errors import SheetError
from image_batch.common.slug import context_folder
from image_batch.descriptions import row_settings

COLUMNS = ("image_id", "context", "description")
# per-row: variant (any new value asks for a fresh image of that row); reference and mask (pictures
# to edit, see descriptions.references)
OPTIONAL_COLUMNS = ("variant", "reference", "mask")
KNOWN_COLUMNS = COLUMNS + OPTIONAL_COLUMNS + row_settings.COLUMNS  # per-row settings, variants: see row_settings
MAX_FOLDER_CHARS = 100
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "images.schema.yaml"

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
DELIMITERS = {",": "commas", ";": "semicolons", "\t": "tabs"}  # what csv_delimiter may be, besides "auto"
FIX = "format the column as Text and retype it"
PASSWORD = "the workbook is password-protected; save a copy without a password and use that"

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_OOXML = "EncryptedPackage".encode("utf-16-le")  # the stream an encrypted .xlsx keeps its zip in
# Excel's built-in number formats, for messages (ids 14-22 and 45-47 are dates and times: read as such)
_BUILTIN_FORMATS = {0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%"}
_BUILTIN_FORMATS |= {11: "0.00E+00", 12: "# ?/?", 13: "# ??/??", 48: "##0.0E+0", 49: "@"}


@dataclass(frozen=True)
class Row:
    line: int  # where the record starts: its line in a text file (1 = first line), its row in a workbook
    image_id: str
    context: str
    folder: str
    description: str
    variant: str = ""
    # how messages name the record: "line 7", or "sheet 'Images', row 7"; not part of the row's value
    place: str = field(default="", compare=False)
    settings: tuple = ()  # ((column, cell), ...) of the row's non-empty per-row settings (row_settings)
    reference: str = ""  # pictures to start from (descriptions.references)
    mask: str = ""

    def __post_init__(self):
        if not self.place:
            object.__setattr__(self, "place", f"line {self.line}")


@dataclass
class _Table:
    """The records of a sheet, before the checks that do not depend on its format."""

    unit: str  # "line" (text) or "row" (workbook)
    prefix: str  # "" or "sheet 'Images', "
    header_line: int
    names: dict  # column -> its name as the header spells it
    records: list = field(default_factory=list)  # (line, {column: text}, {columns already refused})
    problems: list = field(default_factory=list)

    def place(self, line):
        return f"{self.prefix}{self.unit} {line}"


def near_sheets(path):
    """For a sheet path that does not exist: the sheets of its folder with a near name (a typo:
    config/exmaple.csv), or that the folder itself is missing."""
    folder = path.parent
    try:
        names = [entry.name for entry in folder.iterdir() if entry.suffix.lower() in TEXT_SUFFIXES + WORKBOOK_SUFFIXES]
    except OSError:
        return f" (there is no folder {folder})"
    guess = difflib.get_close_matches(path.name, sorted(names), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(str(folder / name) for name in guess)}?" if guess else ""


def read_sheet(path, max_description_chars=32000, sheet_name=None, delimiter="auto"):
    """Parse and validate ``path``.  Returns a list of :class:`Row` or raises :class:`SheetError`.

    ``sheet_name``: the worksheet of a workbook (None: the first visible one). ``delimiter``: for
    text files other than .tsv, ``"auto"`` or one of ``,`` ``;`` and tab."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        text = f"cannot read the file: {getattr(exc, 'strerror', None) or exc}"
        if isinstance(exc, FileNotFoundError):
            text += near_sheets(path)
        raise SheetError(path, [text])
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        table = _read_workbook(path, data, sheet_name)
    else:
        if data.startswith(_ZIP_MAGIC) or data.startswith(_OLE_MAGIC):
            raise SheetError(
                path,
                [
                    "the file is a spreadsheet workbook, not text: name it after its format "
                    "(.xlsx, .ods or .xls) or export the sheet as CSV UTF-8"
                ],
            )
        table = _read_text(path, data, "\t" if path.suffix.lower() == ".tsv" else delimiter)
    return _validate(path, table, max_description_chars)


# ---------------------------------------------------------------------------------------------- text


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


def _column_key(name):
    """How a header cell is matched: 'Image ID', ' image-id ', 'IMAGE_ID' all name image_id."""
    return re.sub(r"[\s_-]+", "_", str(name).strip().lower())


def _detect_delimiter(text):
    """The delimiter of the first non-blank line: the one that splits it into the most known columns
    (then into the most cells); a comma when nothing tells."""
    line = next((ln for ln in io.StringIO(text) if ln.strip(' \t\r\n,;"')), "")
    best, best_score = ",", (-1, -1)
    for delimiter in DELIMITERS:
        cells = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
        score = (len({_column_key(c) for c in cells} & set(KNOWN_COLUMNS)), len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _header(table, cells, problems):
    """Map the known columns to their index in ``cells``; record problems of a bad header."""
    index = {}
    for i, cell in enumerate(cells):
        key = _column_key(cell)
        if key not in KNOWN_COLUMNS:
            continue
        if key in index:
            problems.append(
                f"{table.place(table.header_line)}: columns {table.names[key]!r} and {str(cell).strip()!r} "
                f"both name {key}; keep one"
            )
        else:
            index[key] = i
            table.names[key] = str(cell).strip()
    missing = [c for c in COLUMNS if c not in index]
    if missing:
        found = ", ".join(s for s in (str(c).strip() for c in cells) if s)
        problems.append(
            f"{table.place(table.header_line)}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"the header must name {', '.join(COLUMNS)} (found: {found})"
        )
    return index


def _read_text(path, data, delimiter):
    text, problem = _decode(path, data)
    if problem:
        raise SheetError(path, [problem])
    if not text.strip():
        raise SheetError(path, ["the file is empty; expected a header line: image_id,context,description"])
    if delimiter in (None, "auto"):
        delimiter = _detect_delimiter(text)
    elif delimiter not in DELIMITERS:
        raise SheetError(path, [f"csv_delimiter {delimiter!r} is not one of auto, ',', ';' and a tab"])

    # strict: an unclosed quote is an error, not a description that swallows the rows after it
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True, strict=True)
    table = _Table("line", "", 0, {})
    try:
        header = None
        for record in reader:
            table.header_line = reader.line_num
            if any(cell.strip() for cell in record):
                header = record
                break
        if header is None:
            raise SheetError(path, ["the file has no header line: expected image_id,context,description"])
        problems = []
        index = _header(table, header, problems)
        if problems:
            others = [d for d in DELIMITERS if d != delimiter and d in header[0]]
            if len(header) == 1 and others:
                problems[-1] += f"; the header looks separated by {others[0]!r}: set csv_delimiter to auto"
            raise SheetError(path, problems)
        hint = f"quote a description that contains {DELIMITERS[delimiter]}"
        if delimiter != "\t":
            hint += f', e.g. "red{delimiter} white and blue"'
        prev_end = reader.line_num
        for record in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # blank line, or an empty spreadsheet row like ",,"
            if len(record) > len(header) and any(cell.strip() for cell in record[len(header) :]):
                table.problems.append(
                    f"line {start}: {len(record)} values but the header has {len(header)} columns; {hint}"
                )
                continue
            values = {c: (_clean(record[i]) if i < len(record) else "") for c, i in index.items()}
            table.records.append((start, values, set()))
    except csv.Error as exc:
        raise SheetError(path, [f"line {reader.line_num}: not valid CSV: {exc}"])
    return table


def _clean(text):
    """Trimmed, with line breaks inside a cell as "\\n" whatever the file used, so a re-export with
    other line endings does not change the prompt (and so the request, and what is paid for)."""
    return text.strip().replace("\r\n", "\n")


# ------------------------------------------------------------------------------------------ workbooks


def _broken(path, what):
    return SheetError(path, [what])


def _check_container(path, data):
    """The workbook's format as its content says ("xlsx", "ods" or "xls": the reader goes by content
    too), or one clear line for a file that cannot be a workbook."""
    suffix = path.suffix.lower()
    if not data:
        raise _broken(path, f"the file is empty (0 bytes), not a {suffix} workbook; save the workbook again")
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTED_OOXML in data:
            raise _broken(path, PASSWORD)
        return "xls"
    if not data.startswith(_ZIP_MAGIC):
        what = "a web page" if data.lstrip()[:1] == b"<" else "text (a CSV saved under this name?)"
        raise _broken(
            path,
            f"the file is not a real {suffix} workbook: it holds {what}; save it from your spreadsheet program "
            f"as {suffix}, or give a CSV the name .csv",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if "META-INF/manifest.xml" in names and b"encryption-data" in archive.read("META-INF/manifest.xml"):
                raise _broken(path, PASSWORD)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError):
        raise _broken(path, f"the {suffix} file is damaged (not a complete zip archive); save the workbook again")
    return "ods" if "content.xml" in names else "xlsx"


def _pick_sheet(path, workbook, sheet_name):
    import python_calamine

    sheets = [m for m in workbook.sheets_metadata if m.typ == python_calamine.SheetTypeEnum.WorkSheet]
    names = [m.name for m in sheets]
    if not names:
        raise _broken(path, "the workbook has no worksheet")
    if sheet_name is None:
        visible = [m.name for m in sheets if m.visible == python_calamine.SheetVisibleEnum.Visible]
        return (visible or names)[0]
    if sheet_name in names:
        return sheet_name
    close = [n for n in names if n.strip().casefold() == str(sheet_name).strip().casefold()]
    if len(close) == 1:
        return close[0]
    raise _broken(
        path,
        f"the workbook has no worksheet named {sheet_name!r}; its worksheets are: {', '.join(map(repr, names))}",
    )


def _load_cells(path, data, sheet_name):
    """(sheet name, rows of cell values from A1) via pandas' calamine reader, or one clear line."""
    # imported here, not with the module: a text sheet needs neither, and every process that plans a
    # run imports this module (pandas alone takes about 0.4 s to import)
    import pandas as pd
    import python_calamine

    suffix = path.suffix.lower()
    try:
        with pd.ExcelFile(io.BytesIO(data), engine="calamine") as book:
            name = _pick_sheet(path, book.book, sheet_name)
            frame = pd.read_excel(book, sheet_name=name, header=None, dtype=object, na_filter=False)
        return name, frame.to_numpy().tolist()
    except SheetError:
        raise
    except python_calamine.PasswordError:
        raise _broken(path, PASSWORD)
    except BaseException as exc:  # a damaged file can fail in many ways, even as a panic in the Rust reader
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if data.startswith(_OLE_MAGIC) and _xls_has_password(data):
            raise _broken(path, PASSWORD)
        if "detect file format" in detail:
            container = "zip archive" if data.startswith(_ZIP_MAGIC) else "file"
            raise _broken(path, f"the {container} is not an Excel or OpenDocument workbook; save it again as {suffix}")
        raise _broken(path, f"the {suffix} file is damaged ({detail}); open it and save the workbook again")


def _xls_has_password(data):
    """Whether an .xls is encrypted: its FilePass record follows the workbook's BOF (BIFF8, globals).
    The reader only says "Cannot detect file format" then."""
    start = data.find(b"\x09\x08\x10\x00\x00\x06\x05\x00")
    return start >= 0 and data[start + 20 : start + 22] == b"\x2f\x00"


def _read_workbook(path, data, sheet_name):
    kind = _check_container(path, data)
    name, rows = _load_cells(path, data, sheet_name)
    table = _Table("row", f"sheet {name!r}, ", 0, {})
    header = None
    for number, row in enumerate(rows, start=1):
        if not _blank(row):
            header, table.header_line = row, number
            break
    if header is None:
        raise _broken(path, f"the worksheet {name!r} is empty; expected a header row: image_id, context, description")
    problems = []
    index = _header(table, header, problems)
    if problems:
        raise SheetError(path, problems)

    pending = []  # (row, column, record values, refused set, value): numbers whose shown text is in the file
    for number, row in enumerate(rows[table.header_line :], start=table.header_line + 1):
        if _blank(row):
            continue
        values, refused = {}, set()
        for column, i in index.items():
            value = row[i] if i < len(row) else ""
            if isinstance(value, str):
                values[column] = _clean(value)
                continue
            if column in row_settings.NUMBERS and isinstance(value, numbers.Number) and not isinstance(value, bool):
                values[column] = _number_text(value)  # a count, a percentage: the number is what was meant
                continue
            values[column] = ""
            refused.add(column)
            if isinstance(value, numbers.Number) and not isinstance(value, bool):
                pending.append((number, i, column, values, value))
            else:
                table.problems.append(f"{table.place(number)}, column {table.names[column]}: {_not_text(value)}")
        table.records.append((number, values, refused))

    _resolve_cells(path, data, kind, name, table, index, pending)
    return table


def _blank(row):
    return all(isinstance(c, str) and not c.strip() for c in row)


def _not_text(value):
    if isinstance(value, bool):
        return f"the cell holds the logical value {str(value).upper()}, not text; {FIX}"
    if isinstance(value, datetime.timedelta):
        return f"the cell holds a duration ({value}), not text; {FIX}"
    if isinstance(value, datetime.time):
        return f"the cell holds a time ({value.isoformat()}): the spreadsheet turned what was typed into a time; {FIX}"
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        value = value.date()
    if isinstance(value, datetime.date):
        return f"the cell holds a date ({value.isoformat()}): the spreadsheet turned what was typed into a date; {FIX}"
    return f"the cell holds a {type(value).__name__} ({value!r}), not text; {FIX}"


def _number_text(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _resolve_cells(path, data, kind, sheet, table, index, pending):
    """Numbers read as the text they show where the file records it; refused otherwise. Also finds
    cells the reader gives as empty or changed: errors (#N/A) and, in .ods, text with tabs."""
    column_of = {i: c for c, i in index.items()}
    records = {number: (values, refused) for number, values, refused in table.records}
    info = {}
    try:
        if kind == "xlsx":
            info = _xlsx_cells(data, sheet, set(column_of), table.header_line, need=bool(pending))
        elif kind == "ods":
            info = _ods_cells(data, sheet, set(column_of), table.header_line, max(records, default=0), bool(pending))
    except (KeyError, ValueError, IndexError, StopIteration, OSError, zipfile.BadZipFile, ElementTree.ParseError):
        info = {}  # cannot look inside: the numbers are refused below, never guessed
    for number, i, column, values, value in pending:
        shown, problem = _shown(kind, info.get((number, i)), value)
        if problem:
            table.problems.append(f"{table.place(number)}, column {table.names[column]}: {problem}")
        else:
            values[column] = _clean(shown)
            records[number][1].discard(column)
    for (number, i), cell in info.items():
        if number not in records or i not in column_of:
            continue
        column = column_of[i]
        values, refused = records[number]
        if cell[0] == "error" and column not in refused:
            refused.add(column)
            values[column] = ""
            table.problems.append(
                f"{table.place(number)}, column {table.names[column]}: the cell shows the error {cell[1]}; "
                "fix the formula or type the text"
            )
        elif cell[0] == "text" and column not in refused:
            values[column] = _clean(cell[1])


def _shown(kind, cell, value):
    """(the text a number cell shows, None), or (None, problem) when the file does not record it reliably."""
    number = _number_text(value)
    if cell and cell[0] == "error":
        return None, f"the cell shows the error {cell[1]}; fix the formula or type the text"
    if kind == "ods":
        if cell and cell[0] == "shown" and cell[1].strip():
            return cell[1], None
        return None, f"the cell holds the number {number} and the file does not keep the text shown; {FIX}"
    if kind == "xlsx" and cell and cell[0] == "format":
        code, whole = cell[1], float(value).is_integer()
        if code.lower() in ("general", "@") and whole and abs(value) < 1e11:
            return number, None  # what General shows of a whole number up to 11 digits: its digits
        if code == "0" and whole and abs(value) < 1e15:
            return number, None
        if code.lower() in ("general", "@", "0"):
            return None, f"the cell holds the number {number}, which Excel may show rounded or as 1.2E+11; {FIX}"
        return None, (
            f"the cell holds the number {number} shown with the number format {code!r}: the file keeps the "
            f"number, not the text shown (e.g. leading zeros); {FIX}"
        )
    if kind == "xls":
        return None, (
            f"the cell holds the number {number}, and an .xls file does not say how it is shown; {FIX}, "
            "or save the workbook as .xlsx"
        )
    return None, f"the cell holds the number {number}, not text; {FIX}"


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _attr(element, name):
    """An attribute by local name, whatever its namespace."""
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value
    return None


# the start tags of rows and cells in a worksheet part: the few attributes read (r, s, t) never hold
# ">" and text never holds an unescaped "<", so a scan of the bytes finds them exactly, without
# building a tree of a sheet the reader has already read
_ROW_OR_CELL = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(row|c)\b([^>]*)>")
_R = re.compile(rb"""(?:^|\s)r\s*=\s*["']([A-Z]*)(\d+)""")
_S = re.compile(rb"""(?:^|\s)s\s*=\s*["'](\d+)""")
_T = re.compile(rb"""(?:^|\s)t\s*=\s*["'](\w+)""")
_VALUE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?v>([^<]*)<|</(?:[A-Za-z_][\w.-]*:)?c>")


def _column_index(letters, cache={}):  # noqa: B006 - a cache of "A" -> 0, "AB" -> 27
    if letters not in cache:
        index = 0
        for letter in letters.decode("ascii"):
            index = index * 26 + ord(letter) - 64
        cache[letters] = index - 1
    return cache[letters]


def _xlsx_cells(data, sheet, columns, header_line, need):
    """{(row, column index): ("format", code) for number cells, ("error", text) for error cells} in
    ``columns`` below the header. Skipped (empty) when no number is pending and no cell is an error."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rid = next(_attr(s, "id") for s in workbook.iter() if _local(s.tag) == "sheet" and s.get("name") == sheet)
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
        target = next(r.get("Target") for r in rels.iter() if _local(r.tag) == "Relationship" and r.get("Id") == rid)
        part = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        xml = archive.read(part)
        if not need and b't="e"' not in xml and b"t='e'" not in xml:
            return {}
        formats = dict(_BUILTIN_FORMATS)
        styles = []
        if "xl/styles.xml" in archive.namelist():
            root = ElementTree.fromstring(archive.read("xl/styles.xml"))
            for element in root.iter():
                if _local(element.tag) == "numFmt":
                    formats[int(element.get("numFmtId"))] = element.get("formatCode", "")
            xfs = next((e for e in root.iter() if _local(e.tag) == "cellXfs"), None)
            styles = [int(xf.get("numFmtId", "0")) for xf in xfs if _local(xf.tag) == "xf"] if xfs is not None else []
    found = {}
    row = column = 0
    for match in _ROW_OR_CELL.finditer(xml):
        attributes = match[2]
        if match[1] == b"row":
            ref = _R.search(attributes)
            row, column = (int(ref[2]) if ref else row + 1), -1
            continue
        ref = _R.search(attributes)
        if ref:
            row, column = int(ref[2]), _column_index(ref[1])
        else:
            column += 1
        if row <= header_line or column not in columns:
            continue
        cell_type = _T.search(attributes)
        cell_type = cell_type[1] if cell_type else b"n"
        if cell_type == b"e":
            value = None if attributes.endswith(b"/") else _VALUE.search(xml, match.end())
            text = value[1] if value and value[1] is not None else b""
            found[(row, column)] = ("error", text.decode("utf-8", "replace"))
        elif cell_type == b"n":
            style = _S.search(attributes)
            fmt = styles[int(style[1])] if style and int(style[1]) < len(styles) else 0
            found[(row, column)] = ("format", formats.get(fmt, f"number format {fmt}"))
    return found


_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_CALCEXT = "{urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0}"


def _odf_text(element):
    """The text of an ODF text element: <text:s/> runs of spaces, tabs and line breaks included."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == _TEXT + "s":
            parts.append(" " * int(child.get(_TEXT + "c") or 1))
        elif child.tag == _TEXT + "tab":
            parts.append("\t")
        elif child.tag == _TEXT + "line-break":
            parts.append("\n")
        elif child.tag.startswith(_TEXT):  # spans, links; not notes or annotations
            parts.append(_odf_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _ods_entry(cell):
    """What the reader cannot tell about one cell: its shown text if it is a number, that it is an
    error, or its text if it has a tab (the reader drops tabs); None for the rest."""
    value_type = cell.get(_OFFICE + "value-type")
    text = "\n".join(_odf_text(p) for p in cell if p.tag in (_TEXT + "p", _TEXT + "h"))
    if cell.get(_CALCEXT + "value-type") == "error":
        return ("error", text.strip() or "#VALUE!")
    if value_type in ("float", "percentage", "currency"):
        return ("shown", text)
    if "\t" in text:
        return ("text", text)
    return None


def _ods_cells(data, sheet, columns, header_line, last_row, need):
    """{(row, column index): entry (see _ods_entry)} for ``columns`` of rows header_line+1..last_row. Skipped
    (empty) when no number is pending and the file has no error cell and no tab."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        xml = archive.read("content.xml")
    if not need and b"<text:tab" not in xml and b'value-type="error"' not in xml:
        return {}
    found = {}
    inside = False
    row = 0  # rows seen so far in the sheet (repeated rows counted)
    for event, element in ElementTree.iterparse(io.BytesIO(xml), events=("start", "end")):
        if event == "start":
            if element.tag == _TABLE + "table" and element.get(_TABLE + "name") == sheet:
                inside = True
            continue
        if element.tag == _TABLE + "table" and inside:
            break
        if element.tag != _TABLE + "table-row":
            continue
        if not inside:
            element.clear()
            continue
        first = row + 1
        row += int(element.get(_TABLE + "number-rows-repeated") or 1)
        column = 0
        for cell in element if row > header_line else ():
            if cell.tag not in (_TABLE + "table-cell", _TABLE + "covered-table-cell"):
                continue
            span = int(cell.get(_TABLE + "number-columns-repeated") or 1)
            hits = columns.intersection(range(column, column + span))
            column += span
            entry = _ods_entry(cell) if hits else None
            if entry:
                for r in range(max(first, header_line + 1), min(row, last_row) + 1):
                    found.update(((r, c), entry) for c in hits)
        element.clear()
    return found


# ----------------------------------------------------------------------------------------- the checks


def _load_schema(max_description_chars):
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    if max_description_chars:
        schema["properties"]["description"]["maxLength"] = int(max_description_chars)
    return schema


def _validate(path, table, max_description_chars):
    schema = _load_schema(max_description_chars)
    fast_check = fastjsonschema.compile(schema)  # compiled once: most rows are valid, check them fast
    validator = jsonschema.Draft202012Validator(schema)  # every detailed error, for the rows that fail
    props = schema["properties"]
    problems = list(table.problems)
    rows = []
    folders = {}  # context -> folder: a sheet has few contexts and many rows
    for line, values, refused in table.records:
        place = table.place(line)
        for column in OPTIONAL_COLUMNS:
            values.setdefault(column, "")
        bad_columns = set(refused)
        for column in KNOWN_COLUMNS:
            if column not in bad_columns and "\x00" in values.get(column, ""):
                problems.append(f"{place}, column {table.names.get(column, column)}: contains a NUL byte")
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
            problems.append(f"{place}, column {table.names.get(column, column)}: {msg}")
            bad_columns.add(column)
        folder = folders.get(values["context"])
        if folder is None:
            folder = folders[values["context"]] = context_folder(values["context"])
        context_name = table.names["context"]
        if len(folder) > MAX_FOLDER_CHARS and "context" not in bad_columns:
            problems.append(
                f"{place}, column {context_name}: context gives a folder name of {len(folder)} characters; "
                f"at most {MAX_FOLDER_CHARS}"
            )
            bad_columns.add("context")
        if values["context"] and "context" not in bad_columns and not folder:
            problems.append(
                f"{place}, column {context_name}: context {values['context']!r} gives an empty folder "
                "name (it needs at least one letter or digit that maps to ASCII)"
            )
            bad_columns.add("context")
        own = tuple((c, values[c]) for c in row_settings.COLUMNS if values.get(c) and c not in bad_columns)
        row = Row(line, values["image_id"], values["context"], folder, values["description"], values["variant"], place)
        if own:
            row = dataclasses.replace(row, settings=own)
        if values["reference"] or values["mask"]:
            row = dataclasses.replace(row, reference=values["reference"], mask=values["mask"])
        rows.append((bad_columns, row))

    problems += _cross_row_problems(rows, table)
    if problems:
        raise SheetError(path, problems)
    if not rows:
        raise SheetError(path, [f"{table.place(table.header_line)}: the sheet has a header but no rows"])
    return [row for _, row in rows]


def _cross_row_problems(rows, table):
    """Problems that involve two rows: duplicate ids, two contexts sharing one folder."""
    problems = []
    seen_ids = {}
    folder_owner = {}
    reported = set()
    id_name, context_name = table.names["image_id"], table.names["context"]
    for bad, row in rows:
        if "image_id" not in bad:
            key = row.image_id.lower()
            if key in seen_ids:
                first = seen_ids[key]
                same = "duplicates" if first.image_id == row.image_id else "differs only in case from"
                problems.append(
                    f"{row.place}, column {id_name}: image_id {row.image_id!r} {same} "
                    f"{first.image_id!r} on {table.unit} {first.line}"
                )
            else:
                seen_ids[key] = row
        if "context" not in bad:
            owner = folder_owner.setdefault(row.folder, row)
            if owner.context != row.context and (owner.context, row.context) not in reported:
                reported.add((owner.context, row.context))
                problems.append(
                    f"{row.place}, column {context_name}: context {row.context!r} maps to folder "
                    f"{row.folder!r}, like context {owner.context!r} on {table.unit} {owner.line}; "
                    "rename one of them"
                )
    return problems


def read_configured_sheet(settings):
    """The rows of the sheet the settings name (``input_csv``, ``input_sheet``, ``csv_delimiter``),
    checked: :func:`read_sheet` as the workflow and ``main.py`` both call it."""
    return read_sheet(
        settings.input_csv,
        settings.max_prompt_chars,
        sheet_name=settings.input_sheet,
        delimiter=settings.csv_delimiter,
    )
