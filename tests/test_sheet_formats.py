"""The descriptions stage reads workbooks (.xlsx, .xls, .ods) and text in every delimiter, with the
same rows giving the same requests whatever the format, and refuses cells a spreadsheet changed."""

import csv
import datetime
import io
import re
import struct
import zipfile
from xml.sax.saxutils import escape, quoteattr

import openpyxl
import pandas as pd
import pytest

from image_batch.common.errors import SheetError
from image_batch.descriptions.sheet import read_sheet
from image_batch.descriptions.specs import build_specs
from tests.conftest import settings_for
from tests.test_specs import write_specs

CONFIG = settings_for(openai={"model": "gpt-image-2.5-sunburst", "size": "1024x1024", "quality": "low"})

# one sheet, as a careful user keeps it: everything typed as text
HEADER = ["image_id", "context", "description", "variant", "notes"]
TABLE = [
    ["001", "Food & Beverage", 'A cake, with "icing"; and a cherry', "", "extra column"],
    ["a2", "Nature", "two\nlines", "2", ""],
    ["a3", "Café", "été à Paris", "", ""],
    ["3-4", "Nature", "a tab\there, and  two spaces", "v1", "n"],
]


# ---------------------------------------------------------------------------------------- fixtures


def write_text(path, rows, delimiter, bom=False, newline="\r\n"):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    return path


def write_xlsx(path, rows, title="Images", formats=None, before=(), hidden=()):
    """rows from A1; ``formats`` {(row, column) 1-based: number format}; ``before`` sheets in front."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name in before:
        extra = book.create_sheet(name)
        extra.append(["not", "this", "one"])
        if name in hidden:
            extra.sheet_state = "hidden"
    sheet = book.create_sheet(title)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None and value != "":
                cell = sheet.cell(r, c, value)
                cell.number_format = (formats or {}).get((r, c), cell.number_format)
    book.save(path)
    return path


def write_pandas(path, rows, engine, sheet_name="Images"):
    pd.DataFrame(rows[1:], columns=rows[0]).to_excel(path, index=False, engine=engine, sheet_name=sheet_name)
    return path


OFFICE_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"'
)


def ods_cell(value):
    """A cell as LibreOffice writes it: str -> text; (type, value, shown[, attrs]) -> a typed cell
    with its shown text; None -> an empty cell; raw XML (starting with '<') as it is."""
    if value is None or value == "":
        return "<table:table-cell/>"
    if isinstance(value, str) and value.startswith("<"):
        return value
    if isinstance(value, str):
        paragraphs = "".join(f"<text:p>{escape(p)}</text:p>" for p in value.split("\n"))
        return (
            f'<table:table-cell office:value-type="string" calcext:value-type="string">{paragraphs}</table:table-cell>'
        )
    kind, raw, shown, *attrs = value
    value_attr = {"date": "date-value", "time": "time-value", "boolean": "boolean-value"}.get(kind, "value")
    text = f"<text:p>{escape(shown)}</text:p>" if shown is not None else ""
    return (
        f'<table:table-cell office:value-type="{kind}" office:{value_attr}={quoteattr(str(raw))} '
        f"{' '.join(attrs)}>{text}</table:table-cell>"
    )


def ods_bytes(tables, manifest_extra=""):
    """{sheet name: rows}; a row is a list of cells (see ods_cell) or raw XML of a whole row."""
    body = ""
    for name, rows in tables.items():
        body += f"<table:table table:name={quoteattr(name)}>"
        for row in rows:
            cells = row if isinstance(row, str) else "".join(ods_cell(v) for v in row)
            body += cells if cells.startswith("<table:table-row") else f"<table:table-row>{cells}</table:table-row>"
        body += "</table:table>"
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {OFFICE_NS} office:version="1.3">'
        f"<office:body><office:spreadsheet>{body}</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">{manifest_extra}'
        "</manifest:file-entry></manifest:manifest>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content)
        archive.writestr("META-INF/manifest.xml", manifest)
    return buffer.getvalue()


def write_ods(path, tables, **kwargs):
    path.write_bytes(ods_bytes(tables, **kwargs))
    return path


_END, _FREE = 0xFFFFFFFE, 0xFFFFFFFF


def cfb(streams):
    """A minimal Compound File (version 3, 512-byte sectors), the container of .xls files and of
    encrypted .xlsx files: sector 0 holds the FAT, sector 1 the directory, then each stream in a run
    of sectors. Streams are padded to 4096 bytes, so none belongs in the mini stream."""
    body, fat, entries = b"", [0xFFFFFFFD, _END], []
    for i, (name, data) in enumerate(streams.items(), start=1):
        data = data.ljust(max(4096, -(-len(data) // 512) * 512), b"\0")
        start, count = len(fat), len(data) // 512
        fat += [*range(start + 1, start + count), _END]
        entries.append((name, 2, _FREE, i + 1 if i < len(streams) else _FREE, start, len(data)))
        body += data
    assert len(fat) <= 128 and len(entries) <= 3
    directory = b""
    for name, kind, child, right, start, size in [("Root Entry", 5, 1, _FREE, _END, 0), *entries]:
        raw = name.encode("utf-16-le") + b"\0\0"
        directory += struct.pack(
            "<64sHBBIII16sIQQIQ", raw, len(raw), kind, 1, _FREE, right, child, b"", 0, 0, 0, start, size
        )
    magic = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    # version 3; 2**9-byte sectors; 1 FAT sector; directory at sector 1; no mini FAT, no extra DIFAT
    header = struct.pack("<8s16s5H6s9I", magic, b"", 0x3E, 3, 0xFFFE, 9, 6, b"", 0, 1, 1, 0, 4096, _END, 0, _END, 0)
    header += struct.pack("<109I", 0, *[_FREE] * 108)  # the FAT is sector 0
    fat_sector = struct.pack("<128I", *fat, *[_FREE] * (128 - len(fat)))
    return header + fat_sector + directory.ljust(512, b"\0") + body


def _record(kind, data=b""):
    return struct.pack("<HH", kind, len(data)) + data


def _unicode(text, length_format):
    raw = text.encode("utf-16-le")
    return struct.pack(length_format, len(raw) // 2) + b"\x01" + raw


def xls_bytes(sheets, password=False):
    """A minimal BIFF8 workbook, {sheet name: rows from A1}: text as LABEL cells, numbers as NUMBER
    cells. (There is no maintained .xls writer; the reader needs no more than this.)"""

    def bof(kind):
        return _record(0x0809, struct.pack("<4H2I", 0x0600, kind, 0x0DBB, 0x07CC, 0, 6))

    substreams = []
    for rows in sheets.values():
        cells = b""
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, str) and value:
                    cells += _record(0x0204, struct.pack("<3H", r, c, 0) + _unicode(value, "<H"))
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    cells += _record(0x0203, struct.pack("<3Hd", r, c, 0, value))
        substreams.append(bof(0x10) + cells + _record(0x000A))
    filepass = _record(0x002F, struct.pack("<H", 1) + bytes(52)) if password else b""
    names = [_unicode(name, "<B") for name in sheets]
    offset = len(bof(5)) + len(filepass) + sum(len(_record(0x85, bytes(6) + n)) for n in names) + 4
    globals_ = bof(5) + filepass
    for name, substream in zip(names, substreams, strict=True):
        globals_ += _record(0x0085, struct.pack("<I2B", offset, 0, 0) + name)
        offset += len(substream)
    return cfb({"Workbook": globals_ + _record(0x000A) + b"".join(substreams)})


def problems(path, **kwargs):
    with pytest.raises(SheetError) as info:
        read_sheet(path, **kwargs)
    return str(info.value)


def values(rows):
    return [(r.image_id, r.context, r.folder, r.description, r.variant) for r in rows]


# ------------------------------------------------------------------ the same rows in every format


def every_format(tmp_path, rows):
    return {
        "comma.csv": write_text(tmp_path / "comma.csv", rows, ","),
        "excel-eu.csv": write_text(tmp_path / "excel-eu.csv", rows, ";", bom=True),
        "tabs.tsv": write_text(tmp_path / "tabs.tsv", rows, "\t", newline="\n"),
        "book.xlsx": write_pandas(tmp_path / "book.xlsx", rows, "openpyxl"),
        "book.ods": write_pandas(tmp_path / "book.ods", rows, "odf"),
        "book.xls": _write(tmp_path / "book.xls", xls_bytes({"Images": rows})),
    }


def _write(path, data):
    path.write_bytes(data)
    return path


def test_same_rows_give_identical_rows_and_requests_in_every_format(tmp_path):
    files = every_format(tmp_path, [HEADER, *TABLE])
    read = {name: read_sheet(path) for name, path in files.items()}
    expected = [
        ("001", "Food & Beverage", "food-beverage", 'A cake, with "icing"; and a cherry', ""),
        ("a2", "Nature", "nature", "two\nlines", "2"),
        ("a3", "Café", "cafe", "été à Paris", ""),
        ("3-4", "Nature", "nature", "a tab\there, and  two spaces", "v1"),
    ]
    for name, rows in read.items():
        assert values(rows) == expected, name
    specs = {name: build_specs(rows, CONFIG, "openai", name) for name, rows in read.items()}
    assert all(s == specs["comma.csv"] for s in specs.values())
    # places: lines of the text file (the record after the two-line cell starts on line 5), rows of the sheet
    assert [r.place for r in read["comma.csv"]] == ["line 2", "line 3", "line 5", "line 6"]
    assert [r.line for r in read["book.xlsx"]] == [2, 3, 4, 5]
    assert [r.place for r in read["book.ods"]][-1] == "sheet 'Images', row 5"


@pytest.mark.parametrize("suffix", [".xlsx", ".ods", ".csv"])
def test_a_changed_cell_makes_exactly_that_image_stale(tmp_path, suffix):
    def specs_of(rows, name):
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".xlsx":
            write_pandas(path, rows, "openpyxl")
        elif suffix == ".ods":
            write_pandas(path, rows, "odf")
        else:
            write_text(path, rows, ";")
        return build_specs(read_sheet(path), CONFIG, "openai", path)

    root = tmp_path / "specs"
    assert write_specs(specs_of([HEADER, *TABLE], "before"), root) == 4
    assert write_specs(specs_of([HEADER, *TABLE], "again"), root) == 0  # a re-export changes nothing
    edited = [list(r) for r in TABLE]
    edited[2][2] = "été à Lyon"
    assert write_specs(specs_of([HEADER, *edited], "after"), root) == 1


def test_numeric_ids_typed_as_numbers_read_as_shown(tmp_path):
    """A catalogue with ids 1..500 typed as numbers: the ids Excel shows and writes to CSV."""
    rows = [["image_id", "context", "description"]] + [[n, "Nature", f"picture {n}"] for n in range(1, 501)]
    text_rows = [[str(c) for c in row] for row in rows]
    from_csv = read_sheet(write_text(tmp_path / "ids.csv", text_rows, ","))
    from_xlsx = read_sheet(write_xlsx(tmp_path / "ids.xlsx", rows))
    from_ods = read_sheet(write_pandas(tmp_path / "ids.ods", rows, "odf"))
    assert values(from_xlsx) == values(from_csv) == values(from_ods)
    assert from_xlsx[0].image_id == "1" and from_xlsx[-1].image_id == "500"


# --------------------------------------------------------------- cells a spreadsheet turned into values


def test_xlsx_numbers_dates_and_errors(tmp_path):
    rows = [
        ["image_id", "context", "description", "variant"],
        [7, "N", "general whole number", 2],  # row 2: read as shown: 7, variant 2
        [7, "N", "shown as 007", ""],  # row 3: format 000
        [1.5, "N", "a fraction", ""],  # row 4
        [123456789012, "N", "12 digits in General", ""],  # row 5: shown as 1.23457E+11
        [123456789012, "N", "12 digits in format 0", ""],  # row 6: shown in full
        [8, "N", "a number in a Text cell", ""],  # row 7: format @
        ["d1", datetime.date(2024, 3, 4), "a date", ""],  # row 8
        ["t1", "N", datetime.time(3, 4), ""],  # row 9
        ["b1", "N", True, ""],  # row 10
        ["e1", "N", "#N/A", ""],  # row 11: an error cell
        ["p1", "N", 0.5, ""],  # row 12: 50%
        ["e2", "N", "ok", "#DIV/0!"],  # row 13: an error in the variant
    ]
    formats = {(3, 1): "000", (6, 1): "0", (7, 1): "@", (12, 3): "0%"}
    path = write_xlsx(tmp_path / "types.xlsx", rows, formats=formats)
    message = problems(path)
    place = f"{path}, sheet 'Images', row"
    assert f"{place} 3, column image_id: the cell holds the number 7 shown with the number format '000'" in message
    assert "format the column as Text and retype it" in message
    assert f"{place} 4, column image_id: the cell holds the number 1.5, which Excel may show rounded" in message
    assert f"{place} 5, column image_id: the cell holds the number 123456789012" in message
    assert f"{place} 8, column context: the cell holds a date (2024-03-04)" in message
    assert f"{place} 9, column description: the cell holds a time (03:04:00)" in message
    assert f"{place} 10, column description: the cell holds the logical value TRUE" in message
    assert f"{place} 11, column description: the cell shows the error #N/A" in message
    assert f"{place} 12, column description: the cell holds the number 0.5 shown with the number format '0%'" in message
    assert f"{place} 13, column variant: the cell shows the error #DIV/0!" in message
    assert f"{place} 2," not in message and f"{place} 6," not in message and f"{place} 7," not in message
    assert "is empty" not in message  # a refused cell is reported once, not also as empty
    assert message.count(f"{place} ") == 9

    # an error cell is found even when no cell is a number
    message = problems(write_xlsx(tmp_path / "error.xlsx", [rows[0], ["e1", "N", "#N/A"]]))
    assert "sheet 'Images', row 2, column description: the cell shows the error #N/A" in message

    good = [rows[0], rows[1], rows[5], rows[6]]
    read = read_sheet(write_xlsx(tmp_path / "good.xlsx", good, formats={(3, 1): "0", (4, 1): "@"}))
    assert [(r.image_id, r.variant) for r in read] == [("7", "2"), ("123456789012", ""), ("8", "")]


def test_ods_numbers_read_as_shown_dates_and_errors_refused(tmp_path):
    error = '<table:table-cell table:formula="of:=1/0" office:value-type="float" office:value="0" '
    error += 'calcext:value-type="error"><text:p>#DIV/0!</text:p></table:table-cell>'
    tab = '<table:table-cell office:value-type="string"><text:p>a<text:tab/>b<text:s text:c="2"/>c</text:p>'
    tab += "<text:p>second line</text:p></table:table-cell>"
    rows = [
        ["image_id", "context", "description", "variant"],
        [("float", 1, "001"), "N", ("percentage", 0.5, "50%"), ("float", 2, "2")],  # row 2
        ["d1", ("date", "2024-03-04", "03/04/24"), "x", ""],  # row 3
        ["t1", "N", ("time", "PT03H04M00S", "03:04"), ""],  # row 4
        ["b1", "N", ("boolean", "true", "TRUE"), ""],  # row 5
        ["e1", "N", error, ""],  # row 6
        ["n1", "N", ("float", 3, None), ""],  # row 7: no shown text recorded
        ["s1", "N", tab, ""],  # row 8
    ]
    path = write_ods(tmp_path / "types.ods", {"Images": rows})
    message = problems(path)
    place = f"{path}, sheet 'Images', row"
    assert f"{place} 3, column context: the cell holds a date (2024-03-04)" in message
    assert f"{place} 4, column description: the cell holds a" in message
    assert f"{place} 5, column description: the cell holds the logical value TRUE" in message
    assert f"{place} 6, column description: the cell shows the error #DIV/0!" in message
    assert f"{place} 7, column description: the cell holds the number 3 and the file does not keep the text" in message
    assert message.count(f"{place} ") == 5

    good = write_ods(tmp_path / "good.ods", {"Images": [rows[0], rows[1], rows[7]]})
    assert values(read_sheet(good)) == [
        ("001", "N", "n", "50%", "2"),
        ("s1", "N", "n", "a\tb  c\nsecond line", ""),
    ]


def test_ods_repeated_rows_and_columns_keep_positions(tmp_path):
    """LibreOffice writes runs of equal cells and rows once, with a repeat count."""
    empty_rows = '<table:table-row table:number-rows-repeated="2"><table:table-cell/></table:table-row>'
    two_empty = '<table:table-cell table:number-columns-repeated="2"/>'
    rows = [
        empty_rows,  # rows 1-2
        [two_empty, "image_id", "context", "description"],  # row 3, from column C
        [
            two_empty,
            ("float", 5, "05"),
            "<table:table-cell table:number-columns-repeated='2' "
            "office:value-type='float' office:value='5'><text:p>5.0</text:p></table:table-cell>",
        ],  # row 4
        '<table:table-row table:number-rows-repeated="2"><table:table-cell table:number-columns-repeated="2"/>'
        '<table:table-cell office:value-type="float" office:value="9"><text:p>0009</text:p></table:table-cell>'
        "<table:table-cell table:number-columns-repeated='2' office:value-type='string'><text:p>same</text:p>"
        "</table:table-cell></table:table-row>",  # rows 5-6: the same cells twice: a duplicate id
        [two_empty, "z1", ("date", "2024-01-02", "1/2/24"), "y"],  # row 7
        '<table:table-row table:number-rows-repeated="1048570"><table:table-cell/></table:table-row>',
    ]
    path = write_ods(tmp_path / "repeat.ods", {"Images": rows})
    message = problems(path)
    assert "sheet 'Images', row 6, column image_id: image_id '0009' duplicates '0009' on row 5" in message
    assert "sheet 'Images', row 7, column context: the cell holds a date (2024-01-02)" in message
    assert message.count("sheet 'Images', row") == 2
    rows[3:] = [rows[-1]]  # the header, row 4, the empty rows after
    first = read_sheet(write_ods(tmp_path / "ok.ods", {"Images": rows}))
    assert [(r.line, r.image_id, r.context, r.description) for r in first] == [(4, "05", "5.0", "5.0")]


def test_xls_numbers_are_refused_text_is_read(tmp_path):
    rows = [["image_id", "context", "description"], ["a1", "N", "x"], [7, "N", "y"]]
    path = _write(tmp_path / "old.xls", xls_bytes({"Images": rows}))
    message = problems(path)
    assert "sheet 'Images', row 3, column image_id: the cell holds the number 7, and an .xls file" in message
    assert "or save the workbook as .xlsx" in message
    assert values(read_sheet(_write(tmp_path / "ok.xls", xls_bytes({"Images": rows[:2]})))) == [
        ("a1", "N", "n", "x", "")
    ]


# ------------------------------------------------------------------------- every check, in a sheet


def test_spreadsheet_problems_name_sheet_row_and_column_as_written(tmp_path):
    rows = [
        [],
        [None, "Image ID", "Context ", "DESCRIPTION", "Notes"],  # row 2, from column B
        [None, "", "Nature", "x", "n"],  # row 3
        [None, "a/b", "Nature", "x"],  # row 4
        [None, "a1", "", "x"],  # row 5
        [],  # row 6: blank
        [None, "a2", "Nature", "   "],  # row 7
        [None, "a1", "Nature", "y"],  # row 8
        [None, "A2", "nature!", "z"],  # row 9
        [None, "a3", "!!!", "w"],  # row 10
        [None, "a4", "Nature", "d" * 41],  # row 11
    ]
    path = write_xlsx(tmp_path / "bad.xlsx", rows)
    message = problems(path, max_description_chars=40)
    place = f"{path}, sheet 'Images', row"
    expected = [
        f"{place} 3, column Image ID: image_id is empty",
        f"{place} 4, column Image ID: image_id 'a/b' is not allowed",
        f"{place} 5, column Context: context is empty",
        f"{place} 7, column DESCRIPTION: description is empty",
        f"{place} 8, column Image ID: image_id 'a1' duplicates 'a1' on row 5",
        f"{place} 9, column Image ID: image_id 'A2' differs only in case from 'a2' on row 7",
        f"{place} 9, column Context: context 'nature!' maps to folder 'nature', like context 'Nature' on row 3",
        f"{place} 10, column Context: context '!!!' gives an empty folder name",
        f"{place} 11, column DESCRIPTION: description is 41 characters long; the model allows at most 40",
    ]
    lines = message.splitlines()
    assert lines[0].endswith(f"{len(expected)} problem(s) in the input sheet:")
    for line, want in zip(lines[1:], expected, strict=False):
        assert line.strip().startswith(want), (line, want)  # sorted by row


def test_spreadsheet_layout(tmp_path):
    """Blank rows skipped, extra columns ignored, cells trimmed, line breaks kept."""
    rows = [["image_id", "context", "description", "x"], [], ["  a1 ", " Nature ", " two\r\nlines ", 5], [None] * 4]
    read = read_sheet(write_xlsx(tmp_path / "layout.xlsx", rows))
    assert [(r.line, r.place, r.image_id, r.context, r.description) for r in read] == [
        (3, "sheet 'Images', row 3", "a1", "Nature", "two\nlines")
    ]


def test_header_problems_in_a_sheet(tmp_path):
    message = problems(write_xlsx(tmp_path / "h.xlsx", [["id", "context"], ["x", "y"]]))
    assert "sheet 'Images', row 1: missing column(s) 'image_id', 'description'" in message
    assert "(found: id, context)" in message
    message = problems(write_xlsx(tmp_path / "d.xlsx", [["Image ID", "image_id", "context", "description"]]))
    assert "sheet 'Images', row 1: columns 'Image ID' and 'image_id' both name image_id; keep one" in message
    message = problems(write_xlsx(tmp_path / "n.xlsx", [["image_id", "context", "description"], []]))
    assert "sheet 'Images', row 1: the sheet has a header but no rows" in message
    message = problems(write_xlsx(tmp_path / "e.xlsx", []))
    assert "the worksheet 'Images' is empty; expected a header row" in message


# ------------------------------------------------------------------------------- choosing the sheet


def test_first_visible_worksheet_or_the_one_named(tmp_path):
    rows = [["image_id", "context", "description"], ["a1", "N", "x"]]
    path = write_xlsx(tmp_path / "many.xlsx", rows, title="Images", before=["Hidden", "Notes"], hidden=["Hidden"])
    message = problems(path)  # the first visible sheet is Notes, which has no image_id column
    assert "sheet 'Notes', row 1: missing column(s) 'image_id', 'context', 'description'" in message
    assert [r.place for r in read_sheet(path, sheet_name="Images")] == ["sheet 'Images', row 2"]
    assert read_sheet(path, sheet_name=" images ")[0].image_id == "a1"  # case and spaces forgiven
    assert read_sheet(write_xlsx(tmp_path / "one.xlsx", rows, before=["Hidden"], hidden=["Hidden"]))[0].line == 2


@pytest.mark.parametrize("suffix", [".xlsx", ".ods", ".xls"])
def test_no_such_worksheet_lists_the_sheets(tmp_path, suffix):
    rows = [["image_id", "context", "description"], ["a1", "N", "x"]]
    path = tmp_path / f"book{suffix}"
    if suffix == ".xlsx":
        write_xlsx(path, rows, before=["Notes"])
    elif suffix == ".ods":
        write_ods(path, {"Notes": [["n"]], "Images": rows})
    else:
        _write(path, xls_bytes({"Notes": [["n"]], "Images": rows}))
    message = problems(path, sheet_name="Prompts")
    assert message.splitlines()[1].strip() == (
        f"{path}, the workbook has no worksheet named 'Prompts'; its worksheets are: 'Notes', 'Images'"
    )
    assert read_sheet(path, sheet_name="Images")[0].place == "sheet 'Images', row 2"


# ----------------------------------------------------------------------------------- broken files


def _zip(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _real_xlsx(tmp_path):
    return write_xlsx(tmp_path / "real.xlsx", [["image_id", "context", "description"], ["a", "b", "c"]]).read_bytes()


BROKEN = {
    "text.xlsx": (lambda tmp: b"image_id,context,description\na,b,c\n", "is not a real .xlsx workbook: it holds text"),
    "page.xls": (lambda tmp: b"<html><table><tr><td>x</td></tr></table></html>", "it holds a web page"),
    "empty.ods": (lambda tmp: b"", "the file is empty (0 bytes)"),
    "cut.xlsx": (lambda tmp: _real_xlsx(tmp)[:600], "the .xlsx file is damaged (not a complete zip archive)"),
    "other.xlsx": (lambda tmp: _zip({"word/document.xml": "<x/>"}), "is not an Excel or OpenDocument workbook"),
    "locked.xlsx": (
        lambda tmp: cfb({"EncryptionInfo": b"\x04\x00\x04\x00", "EncryptedPackage": b"\x01" * 5000}),
        "the workbook is password-protected; save a copy without a password",
    ),
    "locked.xls": (lambda tmp: xls_bytes({"S": [["a"]]}, password=True), "the workbook is password-protected"),
    "locked.ods": (
        lambda tmp: ods_bytes({"S": [["a"]]}, manifest_extra="<manifest:encryption-data/>"),
        "the workbook is password-protected",
    ),
    "doc.xls": (lambda tmp: cfb({"WordDocument": b"\x00" * 10}), "the file is not an Excel or OpenDocument workbook"),
    "really-a-book.csv": (_real_xlsx, "the file is a spreadsheet workbook, not text: name it after its format"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_workbook_gets_one_clear_line(tmp_path, name):
    make, expected = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    message = problems(path)
    lines = message.splitlines()
    assert lines[0] == f"{path}: 1 problem(s) in the input sheet:"
    assert lines[1].startswith(f"  {path}, ") and expected in lines[1], lines[1]
    assert "Traceback" not in message and len(lines) == 3


def test_xlsx_sheet_found_by_relative_or_absolute_part_name(tmp_path):
    """Number formats are looked up in the part the workbook names: openpyxl writes an absolute name
    (/xl/worksheets/sheet1.xml), Excel one relative to xl/ (worksheets/sheet1.xml)."""
    rows = [["image_id", "context", "description"], [7, "N", "x"], [8, "N", "y"]]
    absolute = write_xlsx(tmp_path / "absolute.xlsx", rows)
    with zipfile.ZipFile(absolute) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    assert b'Target="/xl/worksheets/sheet1.xml"' in files["xl/_rels/workbook.xml.rels"]
    files["xl/_rels/workbook.xml.rels"] = files["xl/_rels/workbook.xml.rels"].replace(
        b'Target="/xl/worksheets/', b'Target="worksheets/'
    )
    relative = tmp_path / "relative.xlsx"
    relative.write_bytes(_zip(files))
    assert [r.image_id for r in read_sheet(absolute)] == [r.image_id for r in read_sheet(relative)] == ["7", "8"]


def test_numbers_are_refused_when_the_file_cannot_be_looked_into(tmp_path, monkeypatch):
    from image_batch.descriptions import sheet

    def broken(*args, **kwargs):
        raise KeyError("xl/workbook.xml")

    path = write_xlsx(tmp_path / "n.xlsx", [["image_id", "context", "description"], [7, "N", "x"]])
    monkeypatch.setattr(sheet, "_xlsx_cells", broken)
    assert "row 2, column image_id: the cell holds the number 7, not text; format the column" in problems(path)


def test_xlsx_cells_without_references_are_placed_as_the_reader_places_them(tmp_path):
    """Some writers leave out a cell's reference (r="B3"): cells then follow one another in the row."""
    rows = [["image_id", "context", "description"], [7, "N", "x"], [None, 8, 9, "y"]]
    path = write_xlsx(tmp_path / "refs.xlsx", rows, formats={(3, 2): "000"})
    with zipfile.ZipFile(path) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    sheet_xml = files["xl/worksheets/sheet1.xml"]
    files["xl/worksheets/sheet1.xml"] = re.sub(rb'(<c) r="[A-Z]+\d+"', rb"\1", sheet_xml)
    assert files["xl/worksheets/sheet1.xml"].count(b' r="') == 3  # only the rows keep theirs
    path.write_bytes(_zip(files))
    message = problems(path)
    # B3 (8, format 000) is read as the first cell of row 3, C3 (9, General) as the second
    assert "sheet 'Images', row 3, column image_id: the cell holds the number 8 shown with the number format '000'" in (
        message
    )
    assert "row 3, column context" not in message and "1 problem(s)" in message


@pytest.mark.parametrize("made, named", [(".xlsx", ".xls"), (".ods", ".xlsx"), (".xls", ".xlsx")])
def test_a_workbook_under_another_workbook_name_is_read_by_its_content(tmp_path, made, named):
    rows = [["image_id", "context", "description"], [7, "N", "x"]]
    path = tmp_path / f"book{named}"
    if made == ".xlsx":
        write_xlsx(path, rows)
    elif made == ".ods":
        write_ods(path, {"Images": [rows[0], [("float", 7, "007"), "N", "x"]]})
    else:
        _write(path, xls_bytes({"Images": rows}))
    if made == ".xls":  # the .xls rule, whatever the name
        assert "the cell holds the number 7, and an .xls file does not say how it is shown" in problems(path)
    else:
        assert read_sheet(path)[0].image_id == {".xlsx": "7", ".ods": "007"}[made]
