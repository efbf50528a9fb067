"""File imports: reading, mapping, rejects and up-front checks, on real and generated files."""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cxloop.ingest.files import (
    CUSTOMER_FIELDS,
    CUSTOMERS_SCHEMA,
    EVENT_FIELDS,
    EVENTS_SCHEMA,
    ImportInputError,
    ImportOptions,
    ImportSource,
    MessageChunk,
    Reject,
    TableChunk,
    open_import,
    rejects_path_for,
    write_rejects,
)

# The shared data sets sit beside the repository (CI clones it next to shared/).
DATA = next(
    (
        d
        for d in (
            Path("/work/shared/data"),
            Path(__file__).resolve().parents[2] / "shared" / "data",
        )
        if d.is_dir()
    ),
    Path("/work/shared/data"),
)
TELCO = DATA / "telco-customer-churn.csv"
CDNOW = DATA / "cdnow-purchases.txt"
REES46 = DATA / "rees46-ecommerce-events-sample.csv"
# The shared data sets are required: a missing folder fails (the shared_data fixture), never skips.
needs_data = pytest.mark.usefixtures("shared_data")


def read_all(path: Path, **options: Any) -> tuple[ImportSource, pa.Table | None, list[Reject], int]:
    """Every chunk of a tabular file: the canonical table, all rejects, rows read."""
    source = open_import(path, ImportOptions(**options))
    tables: list[pa.Table] = []
    rejects: list[Reject] = []
    rows_read = 0
    for chunk in source.chunks():
        assert isinstance(chunk, TableChunk)
        tables.append(chunk.table)
        rejects.extend(chunk.rejects)
        rows_read += chunk.rows_read
    source.close()
    table = pa.concat_tables(tables) if tables else None
    return source, table, rejects, rows_read


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def props(table: pa.Table, column: str = "properties") -> list[dict[str, Any]]:
    return [json.loads(text) for text in table.column(column).to_pylist()]


def expect_error(path: Path, field: str, *words: str, **options: Any) -> ImportInputError:
    with pytest.raises(ImportInputError) as caught:
        open_import(path, ImportOptions(**options))
    assert caught.value.field == field
    for word in words:
        assert word in caught.value.reason
    assert str(caught.value) == f"{field}: {caught.value.reason}"
    return caught.value


EVENTS_CSV = (
    "user_id,event,timestamp,revenue,sku\n"
    "u1,Order Completed,2024-01-02T10:00:00Z,10.5,007\n"
    "u2,Product Viewed,2024-01-03 11:00:00,,008\n"
)


# -- the three real files ------------------------------------------------------------------


@needs_data
def test_cdnow_whitespace_file_imports_every_purchase() -> None:
    source, table, rejects, rows_read = read_all(
        CDNOW,
        kind="events",
        mapping={
            "customer_id": "user_id",
            "date": "timestamp",
            "dollar_value": "properties.revenue",
        },
        constants={"event": "Order Completed"},
        date_format="%Y%m%d",
    )
    assert table is not None
    assert source.format == "delimited"
    assert source.total_rows == 69_659
    assert (table.num_rows, len(rejects), rows_read) == (69_659, 0, 69_659)
    assert table.schema == EVENTS_SCHEMA
    assert pc.count_distinct(table["user_id"]).as_py() == 23_570
    # 215 lines are exact copies of another line: they are separate purchases.
    assert pc.count_distinct(table["message_id"]).as_py() == 69_659
    first = table.slice(0, 1).to_pylist()[0]
    assert first["user_id"] == "00001"
    assert first["event"] == "Order Completed"
    assert first["timestamp"] == datetime(1997, 1, 1, tzinfo=UTC)
    assert json.loads(first["properties"]) == {"number_of_cds": 1, "revenue": 11.77}
    revenues = [p["revenue"] for p in props(table)]
    assert all(isinstance(v, int | float) for v in revenues)
    assert round(sum(revenues), 2) == pytest.approx(2_500_315.63, abs=0.01)


@needs_data
def test_telco_customers_keep_blank_total_charges_as_null() -> None:
    _, table, rejects, rows_read = read_all(
        TELCO,
        kind="customers",
        mapping={"customerID": "user_id", "gender": "gender", "Partner": "relationship_status"},
    )
    assert table is not None
    assert (table.num_rows, len(rejects), rows_read) == (7_043, 0, 7_043)
    assert table.schema == CUSTOMERS_SCHEMA
    assert set(table["gender"].to_pylist()) == {"female", "male"}
    assert set(table["relationship_status"].to_pylist()) == {"Yes", "No"}
    traits = props(table, "traits")
    assert sum(1 for t in traits if t["TotalCharges"] is None) == 11
    assert all(isinstance(t["TotalCharges"], float | int | None) for t in traits)
    assert traits[0]["SeniorCitizen"] == 0 and traits[0]["tenure"] == 1
    assert traits[0]["PaymentMethod"] == "Electronic check"
    assert "customerID" not in traits[0] and "gender" not in traits[0]


@needs_data
def test_rees46_events_parse_utc_suffixed_timestamps() -> None:
    _, table, rejects, _ = read_all(
        REES46,
        kind="events",
        mapping={"event_type": "event", "event_time": "timestamp", "user_id": "user_id"},
    )
    assert table is not None
    assert (table.num_rows, len(rejects)) == (1_000, 0)
    assert table["timestamp"][0].as_py() == datetime(2019, 10, 1, tzinfo=UTC)
    assert set(table["event"].to_pylist()) <= {"view", "cart", "remove_from_cart", "purchase"}
    first = props(table)[0]
    assert first["brand"] == "shiseido" and first["price"] == 35.79
    # 19-digit ids fit in 64 bits and must keep every digit.
    assert first["category_id"] == 2103807459595387724


# -- rejects -------------------------------------------------------------------------------


def test_event_rejects_name_the_field_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "uid,what,day\n"
        "u1,Bought,01/02/2020\n"
        "u2,Bought,31/02/2020\n"
        ",Bought,02/02/2020\n"
        "u4,,03/02/2020\n"
        "u5,Bought,\n",
    )
    _, table, rejects, rows_read = read_all(
        path,
        kind="events",
        mapping={"uid": "user_id", "what": "event", "day": "timestamp"},
        date_format="%d/%m/%Y",
    )
    assert table is not None and table.num_rows == 1 and rows_read == 5
    assert table["timestamp"][0].as_py() == datetime(2020, 2, 1, tzinfo=UTC)
    by_row = {r.row: r for r in rejects}
    assert by_row[2].field == "timestamp"
    assert by_row[2].reason == "date '31/02/2020' does not match --date-format %d/%m/%Y"
    assert by_row[2].raw == {"uid": "u2", "what": "Bought", "day": "31/02/2020"}
    assert by_row[3].field == "user_id"
    assert by_row[4].field == "event"
    assert (by_row[5].field, by_row[5].reason) == ("timestamp", "timestamp is empty")


def test_customer_rejects_for_email_birth_year_and_identity(tmp_path: Path) -> None:
    path = write(
        tmp_path / "people.csv",
        "id,email,birth_year,gender,signup\n"
        "1,ann@example.com,1980,F,2021-03-04\n"
        "2,not-an-email,1980,M,\n"
        "3,,nineteen,,\n"
        "4,,1850,,\n"
        ",,1990,,\n"
        "6,,,Other,yesterday\n"
        ",bob@example.com,,Male,\n",
    )
    _, table, rejects, _ = read_all(
        path, kind="customers", mapping={"id": "user_id", "signup": "created_at"}
    )
    assert table is not None
    rows = table.to_pylist()
    assert [r["user_id"] for r in rows] == ["1", None]
    assert rows[0]["gender"] == "female" and rows[0]["birth_year"] == 1980
    assert rows[0]["created_at"] == datetime(2021, 3, 4, tzinfo=UTC)
    assert rows[1]["email"] == "bob@example.com" and rows[1]["gender"] == "male"
    reasons = {r.row: (r.field, r.reason) for r in rejects}
    assert reasons[2] == ("email", "e-mail 'not-an-email' is not a valid address")
    assert reasons[3] == ("birth_year", "birth_year 'nineteen' is not a whole number")
    assert reasons[4][0] == "birth_year" and "1850" in reasons[4][1]
    assert reasons[5][0] == "user_id"
    assert reasons[6][0] == "created_at" and "'yesterday'" in reasons[6][1]


def test_gender_is_lower_cased_when_not_a_known_letter(tmp_path: Path) -> None:
    path = write(tmp_path / "g.csv", "user_id,gender\na,Non-Binary\nb,f\nc,FEMALE\nd,\n")
    _, table, _, _ = read_all(path, kind="customers")
    assert table is not None
    assert table["gender"].to_pylist() == ["non-binary", "female", "female", None]


def test_rows_the_parser_cannot_split_are_rejected_and_numbering_holds(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ragged.csv",
        "user_id,event,timestamp\n"
        "u1,A,2020-01-01\n"
        "u2,A,2020-01-02,extra\n"
        "u3,A\n"
        "u4,A,2020-01-04\n"
        ",A,2020-01-05\n",
    )
    _, table, rejects, rows_read = read_all(path, kind="events")
    assert table is not None
    assert table["user_id"].to_pylist() == ["u1", "u4"]
    assert rows_read == 5
    assert [(r.row, r.field) for r in sorted(rejects, key=lambda r: r.row)] == [
        (2, "row"),
        (3, "row"),
        (5, "user_id"),
    ]
    assert "4 values" in rejects[0].reason and rejects[0].raw["_extra"] == "extra"


def test_write_rejects_makes_a_fixable_csv(tmp_path: Path) -> None:
    rejects = [
        Reject(2, "email", "bad", {"id": "2", "email": "x"}),
        Reject(5, "user_id", "missing", {"id": None, "note": {"a": 1}}),
    ]
    target = rejects_path_for(tmp_path / "people.csv")
    assert target == tmp_path / "people.rejects.csv"
    assert rejects_path_for(Path("data.csv")) == Path("data.rejects.csv")
    assert write_rejects(target, rejects) == 2
    with target.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["row", "field", "reason", "id", "email", "note"],
        ["2", "email", "bad", "2", "x", ""],
        ["5", "user_id", "missing", "", "", '{"a":1}'],
    ]


# -- delimiters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "delimiter"),
    [("semi.csv", ";"), ("tab.tsv", "\t"), ("pipe.txt", "|"), ("comma.dat", ",")],
)
def test_delimiter_is_sniffed(tmp_path: Path, name: str, delimiter: str) -> None:
    text = EVENTS_CSV.replace(",", delimiter)
    source, table, rejects, _ = read_all(write(tmp_path / name, text), kind="events")
    assert source.dialect is not None and source.dialect.delimiter == delimiter
    assert table is not None and table.num_rows == 2 and not rejects
    assert props(table) == [{"revenue": 10.5, "sku": "007"}, {"revenue": None, "sku": "008"}]


def _payments(path: Path) -> tuple[ImportSource, pa.Table | None, list[Reject], int]:
    """A blank-separated payments file: id, day (YYYYMMDD) and more columns."""
    return read_all(
        path,
        kind="events",
        mapping={"id": "user_id", "day": "timestamp"},
        constants={"event": "Paid"},
        date_format="%Y%m%d",
    )


def test_whitespace_columns_with_leading_blanks_and_crlf(tmp_path: Path) -> None:
    path = write(
        tmp_path / "fixed.txt",
        "  id     day        amount\r\n"
        "  001    20200101    1.50\r\n"
        "  002    20200102   12.00\r\n"
        "\r\n"
        "  003    20200103\r\n",
    )
    source, table, rejects, _ = _payments(path)
    assert source.dialect is not None and source.dialect.delimiter == "whitespace"
    assert table is not None
    assert table["user_id"].to_pylist() == ["001", "002"]
    assert props(table) == [{"amount": 1.5}, {"amount": 12.0}]
    assert [(r.row, r.field) for r in rejects] == [(3, "row")]
    assert "2 values" in rejects[0].reason


def test_whitespace_values_may_be_quoted_to_hold_blanks(tmp_path: Path) -> None:
    path = write(
        tmp_path / "quoted.txt",
        'id   day       "shop name"   note\n'
        '001  20200101  "Main Street"  "said ""hi"" twice"\n'
        '002  20200102  Depot          ""\n'
        '003  20200103  "North  Side"  6"\n'
        '004  20200104  "unclosed      x\n',
    )
    source, table, rejects, _ = _payments(path)
    assert source.dialect is not None and source.dialect.delimiter == "whitespace"
    assert source.dialect.columns == ("id", "day", "shop name", "note")
    assert table is not None
    assert table["user_id"].to_pylist() == ["001", "002", "003", "004"]
    assert props(table) == [
        {"shop name": "Main Street", "note": 'said "hi" twice'},
        {"shop name": "Depot", "note": None},  # "" is empty, as a blank CSV cell
        {"shop name": "North  Side", "note": '6"'},  # a quote inside a value stays
        {"shop name": '"unclosed', "note": "x"},  # no closing quote: a plain word
    ]
    assert not rejects


@pytest.mark.parametrize("spelling", ["\t", "\\t", "tab"])
def test_explicit_tab_delimiter(tmp_path: Path, spelling: str) -> None:
    path = write(tmp_path / "t.txt", EVENTS_CSV.replace(",", "\t"))
    _, table, _, _ = read_all(path, kind="events", delimiter=spelling)
    assert table is not None and table.num_rows == 2


def test_quoted_values_keep_delimiters_and_newlines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "q.csv",
        'user_id,event,timestamp,note\nu1,A,2020-01-01,"a, b\nc"\nu2,B,2020-01-02,"say ""hi"""\n',
    )
    _, table, rejects, _ = read_all(path, kind="events")
    assert table is not None and not rejects
    assert [p["note"] for p in props(table)] == ["a, b\nc", 'say "hi"']


# -- typing of free-form values --------------------------------------------------------------


def test_property_columns_are_typed_as_whole_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "types.csv",
        "user_id,event,timestamp,ints,floats,mixed,zip,blank,big\n"
        "u1,E,2020-01-01,1,1.5,1,02134, ,99999999999999999999\n"
        "u2,E,2020-01-01,-2,2,x,10001,\t,1\n"
        "u3,E,2020-01-01, ,1e3,3,90210,,2\n",
    )
    _, table, _, _ = read_all(path, kind="events")
    assert table is not None
    assert props(table) == [
        {
            "ints": 1,
            "floats": 1.5,
            "mixed": "1",
            "zip": "02134",
            "blank": None,
            "big": "99999999999999999999",
        },
        {"ints": -2, "floats": 2.0, "mixed": "x", "zip": "10001", "blank": None, "big": "1"},
        {"ints": None, "floats": 1000.0, "mixed": "3", "zip": "90210", "blank": None, "big": "2"},
    ]


def test_column_kinds_look_past_the_first_rows(tmp_path: Path) -> None:
    rows = ["u,E,2020-01-01,1,1.5,1" for _ in range(12_000)]
    rows.append("u,E,2020-01-01,2.5,n/a,007")
    path = write(tmp_path / "late.csv", "user_id,event,timestamp,a,b,c\n" + "\n".join(rows) + "\n")
    _, table, _, _ = read_all(path, kind="events")
    assert table is not None
    assert props(table.slice(0, 1)) == [{"a": 1.0, "b": "1.5", "c": "1"}]
    assert props(table.slice(12_000)) == [{"a": 2.5, "b": "n/a", "c": "007"}]


def test_columns_named_like_fields_map_themselves(tmp_path: Path) -> None:
    path = write(
        tmp_path / "auto.csv",
        "anonymous_id,event,timestamp,channel,properties.plan,other\n"
        "a1,Signed Up,2020-01-01,web,pro,x\n",
    )
    _, table, _, _ = read_all(path, kind="events")
    assert table is not None
    row = table.to_pylist()[0]
    assert (row["anonymous_id"], row["user_id"], row["channel"]) == ("a1", None, "web")
    assert json.loads(row["properties"]) == {"plan": "pro", "other": "x"}


def test_a_repeated_or_empty_column_name_is_read_otherwise_and_said(tmp_path: Path) -> None:
    path = write(
        tmp_path / "twice.csv",
        "user_id,email,email,\nann,a@example.com,b@example.com,z\n",
    )
    with open_import(path, ImportOptions(kind="customers")) as source:
        assert source.dialect is not None
        assert source.dialect.columns == ("user_id", "email", "email_2", "column4")
        assert source.dialect.renamed == (
            "column 3 is read as 'email_2' (a second 'email')",
            "column 4 is read as 'column4' (it has no name)",
        )
    clash = write(tmp_path / "clash.csv", "user_id,a,a,a_2,,column5\nu,1,2,3,4,5\n")
    with open_import(clash, ImportOptions(kind="customers")) as source:
        assert source.dialect is not None
        # Names the header gives stay with their columns; made-up ones go around them.
        assert source.dialect.columns == ("user_id", "a", "a_3", "a_2", "column5_2", "column5")
        assert source.dialect.renamed == (
            "column 3 is read as 'a_3' (a second 'a')",
            "column 5 is read as 'column5_2' (it has no name)",
        )
    cased = write(tmp_path / "cased.csv", "user_id,name,NAME,Name_2\nu,a,b,c\n")
    with open_import(cased, ImportOptions(kind="customers")) as source:
        assert source.dialect is not None
        # Names differing only in case are one name to DuckDB, so they are told apart too.
        assert source.dialect.columns == ("user_id", "name", "NAME_3", "Name_2")
        assert source.dialect.renamed == ("column 3 is read as 'NAME_3' (a second 'name')",)
    plain = write(tmp_path / "plain.csv", "user_id, email\nann,a@example.com\n")
    with open_import(plain, ImportOptions(kind="customers")) as source:
        assert source.dialect is not None and source.dialect.renamed == ()


def test_camel_case_and_capitalised_names_map_themselves(tmp_path: Path) -> None:
    path = write(
        tmp_path / "camel.csv",
        "userId,anonymousId,Event,Timestamp,messageId\nu1,a1,Clicked,2020-01-01,m-1\n",
    )
    _, table, _, _ = read_all(path, kind="events")
    assert table is not None
    row = table.to_pylist()[0]
    assert (row["user_id"], row["anonymous_id"], row["event"]) == ("u1", "a1", "Clicked")
    assert (row["message_id"], row["properties"]) == ("m-1", "{}")


def test_nested_properties_object_is_merged(tmp_path: Path) -> None:
    path = write(
        tmp_path / "nested.jsonl",
        '{"userId":"u1","event":"A","timestamp":"2020-01-01","properties":{"revenue":5},"x":1}\n',
    )
    _, table, _, _ = read_all(path, kind="events")
    assert table is not None
    assert props(table) == [{"revenue": 5, "x": 1}]
    text = write(tmp_path / "text.csv", "user_id,event,timestamp,properties\nu1,A,2020-01-01,hi\n")
    _, table, _, _ = read_all(text, kind="events")
    assert table is not None and props(table) == [{"properties": "hi"}]


def test_constants_fill_fields_and_properties(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "who,when\nu1,2020-01-01\n")
    _, table, _, _ = read_all(
        path,
        kind="events",
        mapping={"who": "user_id", "when": "timestamp"},
        constants={"event": "Order Completed", "channel": "pos", "properties.source": "shop"},
    )
    assert table is not None
    row = table.to_pylist()[0]
    assert (row["event"], row["channel"]) == ("Order Completed", "pos")
    assert json.loads(row["properties"]) == {"source": "shop"}


# -- dates and time zones --------------------------------------------------------------------


def test_default_date_forms_and_time_zone(tmp_path: Path) -> None:
    values = [
        "2019-10-01 00:00:00 UTC",
        "2019-10-01T02:00:00+02:00",
        "2019-10-01T00:00:00Z",
        "2019-10-01 02:00:00",
        "2019-10-01",
        "2019/10/01 02:00",
    ]
    body = "".join(f"u{i},E,{v}\n" for i, v in enumerate(values))
    path = write(tmp_path / "d.csv", "user_id,event,timestamp\n" + body)
    _, table, rejects, _ = read_all(path, kind="events", timezone="Europe/Paris")
    assert table is not None and not rejects
    got = table["timestamp"].to_pylist()
    midnight_utc = datetime(2019, 10, 1, tzinfo=UTC)
    paris_midnight = datetime(2019, 9, 30, 22, tzinfo=UTC)
    assert got == [midnight_utc] * 4 + [paris_midnight, midnight_utc]
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_date_format_with_time(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "user_id,event,timestamp\nu1,E,31/12/2020 23:30\n")
    _, table, _, _ = read_all(path, kind="events", date_format="%d/%m/%Y %H:%M")
    assert table is not None
    assert table["timestamp"][0].as_py() == datetime(2020, 12, 31, 23, 30, tzinfo=UTC)


# -- message ids -----------------------------------------------------------------------------


def test_message_ids_are_stable_and_duplicates_stay_distinct(tmp_path: Path) -> None:
    line = "u1,Order Completed,2020-01-01,9.99\n"
    path = write(
        tmp_path / "dup.csv", "user_id,event,timestamp,revenue\n" + line * 3 + "u2,E,2020-01-01,1\n"
    )
    first = read_all(path, kind="events")[1]
    second = read_all(path, kind="events", chunk_rows=2)[1]
    assert first is not None and second is not None
    ids = first["message_id"].to_pylist()
    assert ids == second["message_id"].to_pylist()
    assert len(set(ids)) == 4
    assert all(i.startswith("imp-") and len(i) == 36 for i in ids)
    # Appending a row does not change the ids of the rows before it.
    path.write_text(path.read_text() + line)
    longer = read_all(path, kind="events")[1]
    assert longer is not None and longer["message_id"].to_pylist()[:4] == ids


def test_mapped_message_id_is_used(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv", "id,user_id,event,timestamp\nabc,u1,E,2020-01-01\n,u1,E,2020-01-01\n"
    )
    _, table, _, _ = read_all(path, kind="events", mapping={"id": "message_id"})
    assert table is not None
    ids = table["message_id"].to_pylist()
    assert ids[0] == "abc" and ids[1].startswith("imp-")


# -- chunks ----------------------------------------------------------------------------------


def test_chunks_carry_their_own_rejects(tmp_path: Path) -> None:
    rows = "".join(f"{'' if i % 10 == 3 else f'u{i}'},E,2020-01-01\n" for i in range(1, 26))
    path = write(tmp_path / "c.csv", "user_id,event,timestamp\n" + rows)
    source = open_import(path, ImportOptions(kind="events", chunk_rows=10))
    assert source.total_rows == 25
    chunks = list(source.chunks())
    assert [c.rows_read for c in chunks] == [10, 10, 5]
    assert [[r.row for r in c.rejects] for c in chunks] == [[3], [13], [23]]
    assert all(isinstance(c, TableChunk) and c.table.num_rows == c.rows_read - 1 for c in chunks)


# -- Parquet and JSONL -----------------------------------------------------------------------


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "uid": ["a", "b", None],
                "name": ["E1", "E2", "E3"],
                "at": pa.array(
                    [datetime(2020, 1, 1, 12), datetime(2020, 1, 2), datetime(2020, 1, 3)],
                    pa.timestamp("ms"),
                ),
                "amount": [1.5, None, float("nan")],
                "qty": pa.array([1, 2, 3], pa.int32()),
                "code": ["007", "008", "009"],
            }
        ),
        path,
    )
    source, table, rejects, _ = read_all(
        path,
        kind="events",
        mapping={"uid": "user_id", "name": "event", "at": "timestamp"},
        timezone="Europe/Paris",
    )
    assert source.format == "parquet" and source.total_rows == 3
    assert table is not None
    assert table["timestamp"].to_pylist() == [
        datetime(2020, 1, 1, 11, tzinfo=UTC),
        datetime(2020, 1, 1, 23, tzinfo=UTC),
    ]
    assert props(table)[0] == {"amount": 1.5, "qty": 1, "code": "007"}
    assert [(r.row, r.field) for r in rejects] == [(3, "user_id")]
    assert rejects[0].raw["amount"] == "nan"


def test_jsonl_segment_messages_pass_through(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.jsonl",
        '{"type":"track","event":"A","userId":"u1"}\n'
        "\n"
        "{not json\n"
        "[1, 2]\n"
        '{"type":"identify","userId":"u2","traits":{"email":"a@b.co"}}\n'
        '{"event":"no type"}\n',
    )
    source = open_import(path, ImportOptions(kind="events"))
    assert source.format == "jsonl"
    chunks = list(source.chunks())
    assert len(chunks) == 1 and isinstance(chunks[0], MessageChunk)
    chunk = chunks[0]
    assert [m["type"] for m in chunk.messages] == ["track", "identify"]
    assert chunk.rows == [1, 5]
    assert [(r.row, r.field) for r in chunk.rejects] == [(3, "line"), (4, "line"), (6, "type")]
    assert chunk.rejects[0].raw == {"line": "{not json"}
    assert chunk.rows_read == 5


def test_jsonl_flat_records_are_mapped_like_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.ndjson",
        '{"uid":"u1","event":"A","ts":"2020-01-01T10:00:00+02:00","n":5,"deep":{"a":1}}\n'
        "oops\n"
        '{"uid":"u2","event":"B","ts":"2020-01-02","n":7.5,"late":"x"}\n',
    )
    _, table, rejects, rows_read = read_all(
        path, kind="events", mapping={"uid": "user_id", "ts": "timestamp"}
    )
    assert table is not None and rows_read == 3
    assert table["timestamp"][0].as_py() == datetime(2020, 1, 1, 8, tzinfo=UTC)
    assert props(table) == [
        {"n": 5, "deep": {"a": 1}, "late": None},
        {"n": 7.5, "deep": None, "late": "x"},
    ]
    assert [(r.row, r.field) for r in rejects] == [(2, "line")]


def test_mapping_is_refused_for_segment_messages(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", '{"type":"track","event":"A","userId":"u1"}\n')
    expect_error(path, "map", "Segment", kind="events", mapping={"event": "event"})


# -- checks before reading -------------------------------------------------------------------


def test_file_problems_are_refused(tmp_path: Path) -> None:
    expect_error(tmp_path / "missing.csv", "file", "does not exist", kind="events")
    expect_error(tmp_path, "file", "directory", kind="events")
    expect_error(write(tmp_path / "x.xlsx", "a"), "file", ".parquet", kind="events")
    expect_error(write(tmp_path / "empty.csv", ""), "file", "empty", kind="events")
    expect_error(write(tmp_path / "bad.parquet", "nope"), "file", "Parquet", kind="events")
    binary = tmp_path / "photo.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    expect_error(binary, "file", "photo.csv", "NUL", kind="events")
    no_bom = tmp_path / "export.csv"
    no_bom.write_bytes("user_id,event,timestamp\nu1,A,2024-01-01\n".encode("utf-16-le"))
    expect_error(no_bom, "file", "--encoding utf-16-le", kind="events")
    read_ok = open_import(no_bom, ImportOptions(kind="events", encoding="utf-16-le"))
    assert read_ok.dialect is not None
    assert read_ok.dialect.columns == ("user_id", "event", "timestamp")
    read_ok.close()


def test_option_problems_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", EVENTS_CSV)
    expect_error(path, "delimiter", "one character", kind="events", delimiter=";;")
    expect_error(path, "timezone", "Mars/Olympus", kind="events", timezone="Mars/Olympus")
    expect_error(path, "date_format", "%", kind="events", date_format="YYYY-MM-DD")
    expect_error(path, "date_format", "%Q", kind="events", date_format="%Q")
    expect_error(path, "chunk_rows", kind="events", chunk_rows=0)


def test_mapping_problems_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", EVENTS_CSV)
    error = expect_error(path, "user_id", "'uid'", kind="events", mapping={"uid": "user_id"})
    assert "user_id, event, timestamp, revenue, sku" in error.reason
    error = expect_error(path, "userid", kind="events", mapping={"sku": "userid"})
    assert all(f in error.reason for f in EVENT_FIELDS) and "properties.NAME" in error.reason
    expect_error(path, "colour", "customers", kind="customers", constants={"colour": "red"})
    expect_error(
        path, "event", "both", kind="events", mapping={"sku": "event"}, constants={"event": "X"}
    )
    expect_error(path, "timestamp", "not a date", kind="events", constants={"timestamp": "soon"})
    expect_error(path, "event", "empty", kind="events", constants={"event": " "})
    expect_error(
        path,
        "event",
        "'revenue' and 'sku'",
        kind="events",
        mapping={"revenue": "event", "sku": "event"},
    )


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("user_id,timestamp\n", "event"),
        ("user_id,event\n", "timestamp"),
        ("event,timestamp\n", "user_id"),
    ],
)
def test_required_event_sources(tmp_path: Path, header: str, field: str) -> None:
    expect_error(write(tmp_path / "e.csv", header), field, "--map", kind="events")


def test_customers_need_user_id_or_email(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "name,colour\nAnn,red\n")
    expect_error(path, "user_id", "email", kind="customers")
    expect_error(
        path,
        "birth_year",
        "1900",
        kind="customers",
        mapping={"name": "email"},
        constants={"birth_year": "1800"},
    )
    _, table, _, _ = read_all(path, kind="customers", mapping={"name": "user_id"})
    assert table is not None and json.loads(table["traits"][0].as_py()) == {"colour": "red"}


# -- text encodings --------------------------------------------------------------------------


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder of this test's own, to see which UTF-8 copies are left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def test_named_encoding_is_read_and_undefined_bytes_reject_their_row(
    tmp_path: Path, own_tmp: Path
) -> None:
    path = tmp_path / "orders.csv"
    header = "user_id,event,timestamp,city,price\n"
    good = "u1,Order Completed,2024-01-02,Köln,€5\n", "u3,Order Completed,2024-01-04,Zürich,2\n"
    undefined = b"u2,Order Completed,2024-01-03,Bad\x81Byte,1\n"  # 0x81 is not in cp1252
    path.write_bytes((header + good[0]).encode("cp1252") + undefined + good[1].encode("cp1252"))
    source, table, rejects, rows_read = read_all(path, kind="events", encoding="windows-1252")
    assert table is not None and rows_read == 3
    assert table["user_id"].to_pylist() == ["u1", "u3"]
    assert [p["city"] for p in props(table)] == ["Köln", "Zürich"]
    assert props(table)[0]["price"] == "€5"
    assert [(r.row, r.field, r.reason) for r in rejects] == [
        (2, "row", "row is not valid cp1252 text")
    ]
    assert source.encoding is not None and source.encoding.name == "cp1252"
    assert list(own_tmp.iterdir()) == []  # the UTF-8 copy went with the source


def test_utf8_errors_suggest_naming_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,event,timestamp,city\nu1,A,2024-01-02,Köln\n".encode("latin-1"))
    _, _, rejects, _ = read_all(path, kind="events")
    assert len(rejects) == 1 and "--encoding" in rejects[0].reason
    _, table, rejects, _ = read_all(path, kind="events", encoding="latin-1")
    assert rejects == [] and table is not None and props(table)[0]["city"] == "Köln"


def test_whitespace_file_keeps_good_lines_beside_one_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "purchases.txt"
    path.write_bytes(
        b"user_id event timestamp city\n"
        b"u1 A 2020-01-01 Koln\n"
        b"u2 A 2020-01-02 K\xf6ln\n"
        b"u3 A 2020-01-03 Rom\n"
    )
    _, table, rejects, rows_read = read_all(path, kind="events")
    assert table is not None and table["user_id"].to_pylist() == ["u1", "u3"]
    assert rows_read == 3
    assert [(r.row, r.field, r.raw["user_id"]) for r in rejects] == [(2, "row", "u2")]
    assert "--encoding" in rejects[0].reason
    _, table, rejects, _ = read_all(path, kind="events", encoding="latin-1")
    assert rejects == [] and table is not None
    assert [p["city"] for p in props(table)] == ["Koln", "Köln", "Rom"]


def test_utf16_with_a_byte_order_mark_needs_no_option(tmp_path: Path, own_tmp: Path) -> None:
    text = "user_id\tevent\ttimestamp\tnote\r\nu1\tSigned Up\t2024-01-02\t日本\r\n"
    path = tmp_path / "export.txt"
    path.write_bytes(text.encode("utf-16"))  # with its BOM, as spreadsheets write it
    source = open_import(path, ImportOptions(kind="events"))
    with source:
        assert source.total_rows == 1
        assert source.text_path != path and source.text_path.parent == own_tmp
        (chunk,) = list(source.chunks())
        assert isinstance(chunk, TableChunk)
        assert props(chunk.table) == [{"note": "日本"}]
    assert not source.text_path.exists() and path.exists()


def test_jsonl_records_in_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_bytes('{"user_id": "u1", "city": "Málaga", "pet": "Señor"}\n'.encode("latin-1"))
    _, table, rejects, _ = read_all(path, kind="customers", encoding="iso-8859-1")
    assert rejects == [] and table is not None
    assert table["city"].to_pylist() == ["Málaga"]
    assert json.loads(table["traits"][0].as_py()) == {"pet": "Señor"}


def test_encoding_problems_are_refused(tmp_path: Path, own_tmp: Path) -> None:
    path = write(tmp_path / "e.csv", EVENTS_CSV)
    expect_error(path, "encoding", "'klingon'", "cp1252", kind="events", encoding="klingon")
    expect_error(path, "encoding", "'base64'", kind="events", encoding="base64")
    expect_error(path, "encoding", "empty", kind="events", encoding=" ")
    table = pa.table({"user_id": ["u1"], "event": ["A"], "timestamp": ["2024-01-01"]})
    pq.write_table(table, tmp_path / "e.parquet")
    expect_error(tmp_path / "e.parquet", "encoding", "text files", kind="events", encoding="cp1252")
    odd = tmp_path / "odd.csv"
    odd.write_bytes("user_id,event,timestamp\n".encode("utf-16-le") + b"u")
    expect_error(odd, "encoding", "odd.csv", "UTF-16", kind="events", encoding="utf-16-le")
    # a refused file leaves no copy behind, nor does one refused after it was copied
    expect_error(path, "user_id", kind="events", encoding="cp1252", mapping={"x": "user_id"})
    assert list(own_tmp.iterdir()) == []


def test_field_lists_are_the_documented_ones() -> None:
    assert CUSTOMER_FIELDS[0] == "user_id" and CUSTOMER_FIELDS[-1] == "created_at"
    assert CUSTOMERS_SCHEMA.names == [*CUSTOMER_FIELDS, "traits"]
    assert EVENTS_SCHEMA.field("message_id").nullable is False


# -- volume ----------------------------------------------------------------------------------


def test_million_row_csv_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "million.csv"
    con = duckdb.connect()
    con.execute(
        f"""COPY (
          SELECT 'u' || (i % 200000) AS user_id,
                 ['Order Completed', 'Product Viewed', 'Signed Up'][1 + i % 3] AS event,
                 strftime(TIMESTAMP '2024-01-01' + to_seconds(i * 7), '%Y-%m-%dT%H:%M:%SZ')
                   AS timestamp,
                 round((i % 10000) / 100.0, 2) AS revenue,
                 i % 5000 AS product_id,
                 CASE i % 3 WHEN 0 THEN '' WHEN 1 THEN 'SAVE10' ELSE 'FREE' END AS coupon
          FROM range(1000000) t(i)
        ) TO '{path}' (HEADER, DELIMITER ',')"""
    ).fetchall()
    con.close()
    started = time.perf_counter()
    source = open_import(path, ImportOptions(kind="events"))
    rows = rejects = 0
    for chunk in source.chunks():
        assert isinstance(chunk, TableChunk)
        rows += chunk.table.num_rows
        rejects += len(chunk.rejects)
    elapsed = time.perf_counter() - started
    print(f"\n1,000,000-row CSV read and mapped in {elapsed:.2f}s: {rows / elapsed:,.0f} rows/s")
    assert (rows, rejects) == (1_000_000, 0)
