"""The descriptions stage: parsing spreadsheet exports and refusing bad sheets with line + column."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from image_batch.common.errors import SheetError
from image_batch.descriptions.sheet import Row, read_sheet


def write(tmp_path, data, name="sheet.csv"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def problems(path, **kwargs):
    with pytest.raises(SheetError) as info:
        read_sheet(path, **kwargs)
    return str(info.value)


def test_spreadsheet_export(tmp_path):
    text = (
        "\ufeffimage_id , Context, description, notes\r\n"
        'a1, Food & Beverage, "A cake, with ""icing""", extra\r\n'
        "\r\n"
        ",,,\r\n"
        'a2,Nature,"two\r\nlines"\r\n'
        "  a3 ,  Café  ,  été à Paris  \r\n"
    )
    rows = read_sheet(write(tmp_path, text))
    assert [(r.line, r.image_id, r.context, r.folder, r.description) for r in rows] == [
        (2, "a1", "Food & Beverage", "food-beverage", 'A cake, with "icing"'),
        (5, "a2", "Nature", "nature", "two\nlines"),
        (7, "a3", "Café", "cafe", "été à Paris"),
    ]


def test_lf_without_bom_and_column_order(tmp_path):
    rows = read_sheet(write(tmp_path, "description,image_id,context\nhello,x1,c\n"))
    assert rows[0].image_id == "x1" and rows[0].description == "hello"


@pytest.mark.parametrize(
    "body, expected",
    [
        (",ctx,desc", "line 2, column image_id: image_id is empty"),
        (".hidden,ctx,desc", "line 2, column image_id: image_id '.hidden' is not allowed"),
        ("a/b,ctx,desc", "line 2, column image_id: image_id 'a/b' is not allowed"),
        ("a b,ctx,desc", "line 2, column image_id: image_id 'a b' is not allowed"),
        ("x" * 129 + ",ctx,desc", "line 2, column image_id: image_id is longer than 128 characters"),
        ("a1,,desc", "line 2, column context: context is empty"),
        ("a1,!!!,desc", "line 2, column context: context '!!!' gives an empty folder name"),
        ("a1,ctx,", "line 2, column description: description is empty"),
        ('a1,ctx,"  "', "line 2, column description: description is empty"),
        ("a1,ctx,has\x00nul", "line 2, column description: contains a NUL byte"),
        ("a1\x00,ctx,d", "line 2, column image_id: contains a NUL byte"),
    ],
)
def test_bad_cells(tmp_path, body, expected):
    path = write(tmp_path, "image_id,context,description\n" + body + "\n")
    message = problems(path)
    assert f"{path}, {expected}" in message


def test_long_description_limit(tmp_path):
    path = write(tmp_path, "image_id,context,description\na1,c," + "x" * 32001 + "\nb1,c," + "y" * 32000 + "\n")
    message = problems(path, max_description_chars=32000)
    assert "line 2, column description: description is 32001 characters long; the model allows at most 32000" in message
    assert "line 3" not in message


def test_duplicates_and_folder_clashes(tmp_path):
    path = write(
        tmp_path,
        "image_id,context,description\n"
        "a1,Food & Beverage,x\n"
        "a1,Food & Beverage,y\n"
        "A1,Food & Beverage,z\n"
        "b1,food beverage,w\n"
        "b2,food beverage,v\n",
    )
    message = problems(path)
    assert "line 3, column image_id: image_id 'a1' duplicates 'a1' on line 2" in message
    assert "line 4, column image_id: image_id 'A1' differs only in case from 'a1' on line 2" in message
    assert "line 5, column context: context 'food beverage' maps to folder 'food-beverage'" in message
    assert message.count("maps to folder") == 1  # one report per clashing pair, not per row


def test_all_problems_reported_at_once_with_correct_lines(tmp_path):
    path = write(tmp_path, 'image_id,context,description\r\nok1,c,"multi\r\nline"\r\n\r\n,c,d\r\nok2,,d\r\n')
    message = problems(path)
    assert "2 problem(s)" in message
    assert "line 5, column image_id: image_id is empty" in message
    assert "line 6, column context: context is empty" in message


def test_missing_columns(tmp_path):
    message = problems(write(tmp_path, "id,context\nx,y\n"))
    assert "line 1: missing column(s) 'image_id', 'description'" in message


def test_not_utf8(tmp_path):
    message = problems(write(tmp_path, b"image_id,context,description\na1,c,ok\na2,c,caf\xe9\n"))
    assert "line 3: text is not UTF-8" in message


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\r\n  \n"])
def test_empty_file(tmp_path, data):
    assert "the file is empty" in problems(write(tmp_path, data))


def test_header_only(tmp_path):
    assert "has a header but no rows" in problems(write(tmp_path, "image_id,context,description\r\n"))


def test_unreadable(tmp_path):
    assert "cannot read the file" in problems(tmp_path / "missing.csv")
    assert "cannot read the file" in problems(tmp_path)  # a directory


def test_no_traceback_text(tmp_path):
    message = problems(write(tmp_path, "image_id,context,description\n,,x\n"))
    assert "Traceback" not in message and message.startswith(str(tmp_path / "sheet.csv"))


def test_optional_variant_column(tmp_path):
    rows = read_sheet(write(tmp_path, "image_id,context,description,variant\na,c,d, 2 \nb,c,e,\n"))
    assert [r.variant for r in rows] == ["2", ""]
    assert read_sheet(write(tmp_path, "image_id,context,description\na,c,d\n", "b.csv"))[0].variant == ""


def test_unquoted_comma_is_refused_not_truncated(tmp_path):
    message = problems(write(tmp_path, "image_id,context,description\na,Food,red, white and blue flag\n"))
    assert "line 2: 4 values but the header has 3 columns; quote a description" in message


def test_extra_named_columns_and_trailing_empty_cells_are_fine(tmp_path):
    rows = read_sheet(write(tmp_path, "image_id,context,description,notes\na,c,d,n\nb,c,e,,,\n"))
    assert [r.description for r in rows] == ["d", "e"]


def test_unclosed_quote_is_refused(tmp_path):
    message = problems(write(tmp_path, 'image_id,context,description\na,Food,"12 inch pizza\nb,Food,y\nc,Food,z\n'))
    assert "not valid CSV" in message


def test_context_folder_too_long(tmp_path):
    message = problems(write(tmp_path, "image_id,context,description\na," + "c" * 300 + ",d\n"))
    assert "line 2, column context: context gives a folder name of 300 characters" in message


# ------------------------------------------------------------------------ delimiters and headers


def test_european_excel_export_with_semicolons(tmp_path):
    """Excel in a locale with decimal commas saves 'CSV' with ';' (refused before as a missing column)."""
    text = (
        "\ufeffimage_id;context;description\r\n"
        'a1; Food & Beverage;"A cake; with ""icing"", and a cherry"\r\n'
        'a2;Nature;"two\r\nlines"\r\n'
        "a3;Nature;red, white and blue\r\n"
    )
    rows = read_sheet(write(tmp_path, text))
    assert [(r.place, r.image_id, r.context, r.description) for r in rows] == [
        ("line 2", "a1", "Food & Beverage", 'A cake; with "icing", and a cherry'),
        ("line 3", "a2", "Nature", "two\nlines"),
        ("line 5", "a3", "Nature", "red, white and blue"),
    ]


def test_tsv_is_tab_separated_whatever_the_setting(tmp_path):
    text = 'image_id\tcontext\tdescription\na1\tNature\tred, white; blue\na2\tNature\t"a\ttab"\n'
    path = write(tmp_path, text, "sheet.tsv")
    for delimiter in ("auto", ",", ";"):
        assert [r.description for r in read_sheet(path, delimiter=delimiter)] == ["red, white; blue", "a\ttab"]
    assert "line 2: 4 values but the header has 3 columns; quote a description that contains tabs" in problems(
        write(tmp_path, "image_id\tcontext\tdescription\na\tb\tc\td\n", "bad.tsv")
    )


def test_delimiter_set_in_config(tmp_path):
    path = write(tmp_path, "image_id;context;description\na1;Nature;red, white\n")
    assert read_sheet(path, delimiter=";")[0].description == "red, white"
    message = problems(path, delimiter=",")
    assert "line 1: missing column(s) 'image_id', 'context', 'description'" in message
    assert "(found: image_id;context;description); the header looks separated by ';': set csv_delimiter to auto" in (
        message
    )
    tabs = write(tmp_path, "image_id\tcontext\tdescription\na1\tNature\tx\n", "tabs.txt")
    assert read_sheet(tabs, delimiter="\t")[0].image_id == read_sheet(tabs)[0].image_id == "a1"
    assert "csv_delimiter '|' is not one of auto" in problems(path, delimiter="|")


def test_extra_values_hint_names_the_delimiter(tmp_path):
    message = problems(write(tmp_path, "image_id;context;description\na;Food;red; white and blue\n"))
    assert (
        'line 2: 4 values but the header has 3 columns; quote a description that contains semicolons, e.g. "red;'
        in (message)
    )


def test_header_names_are_forgiving_and_messages_name_them_as_written(tmp_path):
    path = write(tmp_path, "Image ID, CONTEXT ,Description,Variant\n,Nature,x,\na-1,Nature,,\na-2,!!!,y,v\n")
    message = problems(path)
    assert "line 2, column Image ID: image_id is empty" in message
    assert "line 3, column Description: description is empty" in message
    assert "line 4, column CONTEXT: context '!!!' gives an empty folder name" in message
    rows = read_sheet(write(tmp_path, "image-id,Context,DESCRIPTION,variant\na1,N,x,2\n", "ok.csv"))
    assert (rows[0].image_id, rows[0].variant) == ("a1", "2")


def test_two_columns_for_one_field_are_refused(tmp_path):
    message = problems(write(tmp_path, "image_id,context,description,Description\na,b,c,d\n"))
    assert "line 1: columns 'description' and 'Description' both name description; keep one" in message


def test_row_place_and_value():
    row = Row(7, "a", "C", "c", "d")
    assert row.place == "line 7"
    assert Row(7, "a", "C", "c", "d", "", "sheet 'S', row 7") == row  # where it was read is not its value


def test_problems_sorted_by_line_or_row():
    message = str(
        SheetError(
            "s.xlsx",
            ["sheet 'S', row 10, column image_id: x", "sheet 'S', row 9, column context: y", "a file problem"],
        )
    )
    assert message.index("a file problem") < message.index("row 9,") < message.index("row 10,")


def test_text_sheets_do_not_load_the_workbook_reader(tmp_path):
    """Every process that plans a run imports the sheet module: pandas (about 0.4 s to import) and
    the workbook reader are loaded only when a workbook is read."""
    path = write(tmp_path, "image_id,context,description\na1,c,d\n")
    code = (
        "import sys; from image_batch.descriptions.sheet import read_sheet; "
        f"read_sheet({str(path)!r}); print(sorted({{'pandas', 'python_calamine'}} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "workflow")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"
