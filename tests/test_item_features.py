"""Item content readers: the ``*.inter.json`` events reader and ``read_item_features`` (CSV/TSV, Parquet, JSON lines,
``*.item.json``). Every fixture is a few lines written to tmp_path; the real Amazon files are never needed."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bertrec.data.item_features import ItemFeatures, read_item_features
from bertrec.data.public_formats import READERS, read_inter_json, read_public
from bertrec.data.readers import read_events
from bertrec.data.schema import CANONICAL_COLUMNS, CANONICAL_SCHEMA, DEFAULT_ACTION, EventDataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_json(path: Path, value: object) -> Path:
    return write(path, json.dumps(value, indent=2))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(record) + "\n" for record in records))


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(EventDataError) as error:
        call(*args, **kwargs)
    return str(error.value)


def assert_names(message: str, path: Path, *parts: str) -> None:
    assert str(path) in message, message
    for part in parts:
        assert part in message, message


# ---------------------------------------------------------------------------------------------------------------
# *.inter.json events


def test_inter_json_events_keep_list_order(tmp_path):
    path = write_json(tmp_path / "Shop.inter.json", {"u2": [5, 3, 5], "u1": ["007", 7], "u3": []})
    events = read_inter_json(path)
    assert tuple(events.columns) == CANONICAL_COLUMNS
    assert dict(events.schema) == CANONICAL_SCHEMA
    assert events.select("user_id", "item_id", "event_index").rows() == [
        ("u2", "5", 0),
        ("u2", "3", 1),
        ("u2", "5", 2),
        ("u1", "007", 3),
        ("u1", "7", 4),
    ]
    assert events["action"].unique().to_list() == [DEFAULT_ACTION]
    assert events["timestamp"].null_count() == events.height
    assert "inter_json" in READERS
    assert read_public(path, reader="inter_json").equals(events)
    assert read_public(tmp_path, reader="inter_json").equals(events)  # a folder holding one *.inter.json


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        ('[["u1", 1]]', ["JSON list, not an object"]),
        ('{"u1": 5}', ["user 'u1'", "5 is not a list of items"]),
        ('{"u1": [1, 2], "u2": [3, 2.5]}', ["user 'u2', item 2 of its list", "2.5 is not an item id"]),
        ('{"u1": [true]}', ["user 'u1', item 1 of its list", "True is not an item id"]),
        ('{"u1": [1, {"id": 2}]}', ["user 'u1', item 2 of its list"]),
        ('{"u1": [1, ""]}', ["user 'u1', item 2 of its list", "empty"]),
        ('{"u1": [1], "u1": [2]}', ["'u1' appears twice"]),
        ('{"u1": [1],\n "u2": [2,]}', ["line 2", "not valid JSON"]),
        ('{"u1": [1]}\n{"u2": [2]}\n', ["JSON lines"]),
        ('{"5": {"title": "Pen", "brand": "Acme"}}', ["user '5'", "read_item_features"]),
        ("{}", ["no users"]),
        ("", ["empty"]),
    ],
)
def test_inter_json_errors_name_file_and_user(tmp_path, content, parts):
    path = write(tmp_path / "bad.inter.json", content)
    assert_names(error_of(read_inter_json, path), path, *parts)


# ---------------------------------------------------------------------------------------------------------------
# read_item_features: the same content in every format gives the same table

ITEMS = {
    "a1": {"title": "Pad", "description": "Lined", "brand": "Acme", "categories": "Office, Paper"},
    "7": {"title": "Pen", "brand": "", "categories": "Office"},  # no description at all, empty brand
    "b2": {"title": "", "description": "Blue ink", "brand": "Zed", "categories": ""},
}
EXPECTED = pl.DataFrame(
    {
        "item_id": ["a1", "7", "b2"],
        "brand": [["Acme"], [], ["Zed"]],
        "categories": [["Office", "Paper"], ["Office"], []],
        "title": ["Pad", "Pen", ""],
        "description": ["Lined", "", "Blue ink"],
    },
    schema={
        "item_id": pl.String,
        "brand": pl.List(pl.String),
        "categories": pl.List(pl.String),
        "title": pl.String,
        "description": pl.String,
    },
)
EXPECTED_REPORT = {
    "rows_read": 3,
    "missing": {"brand": 1, "categories": 1, "title": 1, "description": 1},
    "distinct_values": {"brand": 2, "categories": 2},
    "items_without_features": None,
}
CHOSEN = {"categorical": ["brand", "categories"], "text": ["title", "description"]}


def test_item_json_defaults(tmp_path):
    features = read_item_features(write_json(tmp_path / "Shop.item.json", ITEMS))
    assert isinstance(features, ItemFeatures)
    assert features.table.equals(EXPECTED)
    assert (features.categorical, features.text) == (["brand", "categories"], ["title", "description"])
    assert features.report == EXPECTED_REPORT
    assert features.source == str(tmp_path / "Shop.item.json")


def test_csv_tsv_parquet_jsonl_give_the_same_table(tmp_path):
    rows = [{"item_id": key, **fields} for key, fields in ITEMS.items()]
    frame = pl.DataFrame(rows).select("item_id", "brand", "categories", "title", "description")
    frame.write_csv(tmp_path / "items.csv")
    frame.write_csv(tmp_path / "items.tsv", separator="\t")
    split = {"separators": {"categories": ", "}, **CHOSEN}
    parts = pl.col("categories").str.split(", ")
    as_lists = frame.with_columns(parts.list.eval(pl.element().filter(pl.element() != "")))
    as_lists.write_parquet(tmp_path / "items.parquet")
    jsonl = [{**row, "categories": row["categories"].split(", ") if row["categories"] else []} for row in rows]
    jsonl[1]["item_id"] = 7  # an integer id is its decimal text
    jsonl[1]["brand"] = None  # null is missing, like an absent field (its description) or ""
    write_jsonl(tmp_path / "items.jsonl", jsonl)
    results = {
        "csv": read_item_features(tmp_path / "items.csv", **split),
        "tsv": read_item_features(tmp_path / "items.tsv", **split),
        "parquet": read_item_features(tmp_path / "items.parquet", **CHOSEN),
        "jsonl": read_item_features(tmp_path / "items.jsonl", **CHOSEN),
    }
    for name, features in results.items():
        assert features.table.equals(EXPECTED), name
        assert features.report == EXPECTED_REPORT, name


def test_multi_valued_split_strips_and_drops_empty_parts(tmp_path):
    path = write(tmp_path / "movies.csv", "item_id,genres\nm1,Action| Comedy ||Drama\nm2,\nm3,Drama\n")
    split = read_item_features(path, separators={"genres": "|"})
    assert split.table["genres"].to_list() == [["Action", "Comedy", "Drama"], [], ["Drama"]]
    assert split.report["distinct_values"] == {"genres": 3}
    whole = read_item_features(path)
    assert whole.table["genres"].to_list() == [["Action| Comedy ||Drama"], [], ["Drama"]]
    lists = write_jsonl(tmp_path / "movies.jsonl", [{"item_id": "m1", "genres": ["Action|Comedy", None, "Drama"]}])
    assert read_item_features(lists, separators={"genres": "|"}).table["genres"].to_list() == [
        ["Action", "Comedy", "Drama"]
    ]
    # item.json categories are split on "," whether written "a, b" or "a,b"; separators= overrides, None keeps whole
    catalogue = write_json(tmp_path / "x.item.json", {"1": {"categories": "A,B, C"}})
    assert read_item_features(catalogue).table["categories"].to_list() == [["A", "B", "C"]]
    kept = read_item_features(catalogue, separators={"categories": None})
    assert kept.table["categories"].to_list() == [["A,B, C"]]


def test_missing_attributes_are_counted_not_errors(tmp_path):
    items = {
        "1": {"title": "Pen", "brand": "Acme"},
        "2": {"title": None, "brand": None, "categories": None},
        "3": {},
        "4": {"brand": "Acme", "description": "   "},
    }
    features = read_item_features(write_json(tmp_path / "Shop.item.json", items))
    assert features.report["missing"] == {"brand": 2, "categories": 4, "title": 3, "description": 4}
    assert features.report["distinct_values"] == {"brand": 1, "categories": 0}
    assert features.table["categories"].to_list() == [[], [], [], []]
    assert features.table["title"].to_list() == ["Pen", "", "", ""]


def test_defaults_for_other_files_are_string_columns_as_categorical(tmp_path):
    pl.DataFrame(
        {
            "asin": ["x", "y"],
            "brand": ["Acme", None],
            "tags": [["a", "b"], []],
            "price": [1.5, 2.0],
            "meta": [{"k": 1}, {"k": 2}],
        }
    ).write_parquet(tmp_path / "items.parquet")
    features = read_item_features(tmp_path / "items.parquet", item_column="asin")
    assert (features.categorical, features.text) == (["brand", "tags"], [])
    assert features.table.columns == ["item_id", "brand", "tags"]
    priced = read_item_features(tmp_path / "items.parquet", item_column="asin", categorical=["price"], text=["brand"])
    assert priced.table.rows() == [("x", ["1.5"], "Acme"), ("y", ["2.0"], "")]
    csv = write(tmp_path / "items.csv", "item_id,year,title\n1,1999,Pen\n")
    assert read_item_features(csv).table.rows() == [("1", ["1999"], ["Pen"])]  # CSV is all text


def test_recbole_item_files_are_read_by_their_typed_headers(tmp_path):
    """ml-100k.item's layout: genres (token_seq) split on spaces, the year a token, the title text."""
    path = write(
        tmp_path / "ml.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\trating:float\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\t3.9\n2\tGoldenEye\t\tAction\t3.2\n",
    )
    features = read_item_features(path)
    assert (features.categorical, features.text) == (["release_year", "class"], ["movie_title"])
    assert features.table.rows() == [
        ("1", ["1995"], ["Animation", "Children's", "Comedy"], "Toy Story"),
        ("2", [], ["Action"], "GoldenEye"),
    ]
    assert features.report["missing"]["release_year"] == 1


# ---------------------------------------------------------------------------------------------------------------
# Bad input: each message names the file, the row (or line, or item key) and the column


def test_missing_item_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path / "items.csv", "asin,brand\nx,Acme\n")
    assert_names(error_of(read_item_features, path), path, "column 'item_id'", "['asin', 'brand']", "item_column=")
    jsonl = write_jsonl(tmp_path / "items.jsonl", [{"itemid": "x"}])
    assert_names(error_of(read_item_features, jsonl), jsonl, "column 'item_id'", "Did you mean 'itemid'?")


def test_duplicate_item_ids_name_the_first_two_rows(tmp_path):
    path = write(tmp_path / "items.csv", "item_id,brand\na,X\nb,Y\na,Z\nb,W\n")
    message = error_of(read_item_features, path)
    assert_names(message, path, "data row 1 and data row 3", "column 'item_id'", "'a' appears 2 times", "2 id(s)")
    jsonl = write_jsonl(tmp_path / "items.jsonl", [{"item_id": 5}, {"item_id": "6"}, {"item_id": "5"}])
    assert_names(error_of(read_item_features, jsonl), jsonl, "line 1 and line 3", "'5' appears 2 times")
    catalogue = write(tmp_path / "Shop.item.json", '{"5": {"brand": "A"},\n "5": {"brand": "B"}}')
    assert_names(error_of(read_item_features, catalogue), catalogue, "'5' appears twice")


@pytest.mark.parametrize(
    ("name", "content", "options", "parts"),
    [
        ("items.csv", "item_id,brand\na,X\n,Y\n", {}, ["data row 2, column 'item_id'", "missing"]),
        ("Shop.item.json", '{"a": {}, "": {"brand": "X"}}', {}, ["item '': the item id is empty"]),
        ("items.jsonl", '{"item_id": "a"}\n\n{"item_id": ""}\n', {}, ["line 3, column 'item_id'", "empty"]),
        ("items.jsonl", '{"item_id": 1.5}\n', {}, ["line 1, column 'item_id'", "not an item id"]),
        ("items.csv", "item_id,brand\na,X\n", {"categorical": ["colour"]}, ["column 'colour'", "['item_id', 'brand']"]),
        ("Shop.item.json", '{"a": {"title": "T"}}', {"text": ["name"]}, ["column 'name'", "no such column"]),
        (
            "items.jsonl",
            '{"item_id": "a", "brand": "X"}\n{"item_id": "b", "brand": {"name": "Y"}}\n',
            {"categorical": ["brand"]},
            ["line 2, column 'brand'", "nested value"],
        ),
        (
            "items.jsonl",
            '{"item_id": "a", "brand": [["X"]]}\n',
            {"categorical": ["brand"]},
            ["line 1, column 'brand'", "nested value"],
        ),
        (
            "items.jsonl",
            '{"item_id": "a", "title": ["Big", "Pen"]}\n',
            {"text": ["title"]},
            ["line 1, column 'title'", "not a single text"],
        ),
        (
            "Shop.item.json",
            '{"a": {"brand": "X"}, "b": {"brand": {"x": 1}}}',
            {},
            ["item 'b', column 'brand'", "nested value"],
        ),
        ("Shop.item.json", '{"5": [1, 2]}', {}, ["item '5'", "reader='inter_json'"]),
        ("Shop.item.json", '{"a": {"brand": "X"}}\n{"b": {}}\n', {}, ["line 2", "format='jsonl'"]),
        ("items.jsonl", '{"item_id": "a"}\n[1]\n', {}, ["line 2", "not a JSON object"]),
        ("items.csv", "item_id,brand,title\na,X,T\n", {"text": ["title"], "separators": {"title": " "}}, ["'title'"]),
        ("items.csv", "item_id,brand\na,X\n", {"categorical": ["item_id"]}, ["column 'item_id'", "item id"]),
        ("items.csv", "item_id,brand\na,X\n", {"categorical": ["brand"], "text": ["brand"]}, ["['brand']", "both"]),
        ("items.csv", "", {}, ["empty"]),
        ("items.csv", "item_id,brand\n", {}, ["no items", "0 data rows"]),
        ("items.jsonl", "\n\n", {}, ["only blank lines"]),
        ("Shop.item.json", "{}", {}, ["no items"]),
        ("ml.item", "item_id:token\tgenre\n1\tx\n", {}, ["header 'genre'", "name:type"]),
    ],
)
def test_bad_feature_files_name_file_row_and_column(tmp_path, name, content, options, parts):
    path = write(tmp_path / name, content)
    assert_names(error_of(read_item_features, path, **options), path, *parts)


def test_nested_parquet_column_names_its_first_row(tmp_path):
    pl.DataFrame({"item_id": ["a", "b"], "meta": [None, {"k": 1}]}).write_parquet(tmp_path / "items.parquet")
    path = tmp_path / "items.parquet"
    assert_names(
        error_of(read_item_features, path, categorical=["meta"]), path, "data row 2, column 'meta'", "nested value"
    )
    assert_names(error_of(read_item_features, path, text=["meta"]), path, "data row 2, column 'meta'", "single text")


# ---------------------------------------------------------------------------------------------------------------
# for_items, and ids shared with the event readers


def test_for_items_follows_the_given_order_and_counts_absent_items(tmp_path):
    features = read_item_features(write_json(tmp_path / "Shop.item.json", ITEMS))
    rows = features.for_items(["b2", "zz", "a1", "zz", "q"])
    assert rows.columns == EXPECTED.columns
    assert rows["item_id"].to_list() == ["b2", "zz", "a1", "zz", "q"]
    assert rows.row(1) == ("zz", [], [], "", "")
    assert rows.row(0) == EXPECTED.row(2)
    assert features.report["items_without_features"] == 2  # distinct items: "zz" twice counts once
    assert features.for_items(pl.Series(["7"])).row(0) == EXPECTED.row(1)
    assert features.report["items_without_features"] == 0
    with pytest.raises(TypeError, match="strings"):
        features.for_items([7])


def test_integer_ids_of_events_and_features_match(tmp_path):
    events = read_inter_json(write_json(tmp_path / "Shop.inter.json", {"0": [5, 12, 5], "1": [12, 40]}))
    generic = read_events(write_jsonl(tmp_path / "log.jsonl", [{"user_id": 0, "item_id": 5}]))
    assert generic["item_id"].to_list() == ["5"]
    catalogue = {"5": {"brand": "A"}, "12": {"brand": "B"}, "40": {"brand": "C"}, "05": {"brand": "D"}}
    sources = [
        read_item_features(write_json(tmp_path / "Shop.item.json", catalogue)),
        read_item_features(write_jsonl(tmp_path / "f.jsonl", [{"item_id": 5}, {"item_id": 12}, {"item_id": 40}])),
    ]
    pl.DataFrame({"item_id": [5, 12, 40]}).write_parquet(tmp_path / "f.parquet")
    sources.append(read_item_features(tmp_path / "f.parquet"))
    for features in sources:
        rows = features.for_items(events["item_id"].to_list())
        assert rows["item_id"].to_list() == ["5", "12", "5", "12", "40"]
        assert features.report["items_without_features"] == 0, features.source
    assert "05" in sources[0].table["item_id"].to_list()  # exact strings: "05" is another item than 5
