"""Public dataset readers: native files -> canonical events, and wrong files fail naming file, line and column.

Every fixture is a few lines written to tmp_path; the download helper is tested against a local HTTP server and
file:// URLs only, never the internet.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import polars as pl
import pytest

from bertrec.data.download import DownloadError, RemoteDataset, UnsafeArchiveError, download
from bertrec.data.public_formats import (
    READERS,
    read_amazon,
    read_diginetica,
    read_movielens,
    read_public,
    read_recbole,
    read_retailrocket,
    read_sequence_text,
    read_taobao,
    read_tmall,
    read_yoochoose,
)
from bertrec.data.schema import CANONICAL_COLUMNS, CANONICAL_SCHEMA, DEFAULT_ACTION, EventDataError
from bertrec.data.sequences import build_sequences


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def check_canonical(events: pl.DataFrame) -> None:
    assert tuple(events.columns[:5]) == CANONICAL_COLUMNS
    assert {name: events.schema[name] for name in CANONICAL_COLUMNS} == CANONICAL_SCHEMA
    assert events["event_index"].to_list() == list(range(events.height))


def epoch(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()


def rows(events: pl.DataFrame, *columns: str) -> list[tuple]:
    return events.select(columns or ["user_id", "item_id", "action", "timestamp"]).rows()


def assert_error(error: pytest.ExceptionInfo, path: Path, line: int | None, column: str | None, *words: str) -> None:
    message = str(error.value)
    assert str(path) in message
    if line is not None:
        assert f"line {line}" in message, message
    if column is not None:
        assert f"column {column!r}" in message, message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------------------------------------------------------
# MovieLens


def test_movielens_100k_u_data_rate_actions(tmp_path):
    path = write(tmp_path / "ml-100k" / "u.data", "196\t242\t3\t881250949\n007\t302\t4\t891717742\n")
    events = read_movielens(path)
    check_canonical(events)
    assert rows(events) == [("196", "242", "rate_3", 881250949.0), ("007", "302", "rate_4", 891717742.0)]
    assert events["rating"].to_list() == [3.0, 4.0]
    assert read_movielens(tmp_path / "ml-100k").equals(events)  # a folder is searched for the ratings file


def test_movielens_dat_half_stars_and_like_and_none(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::122::5::838985046\n1::185::3.5::838983525\n2::231::4::838983392\n")
    assert read_movielens(path)["action"].to_list() == ["rate_5", "rate_3.5", "rate_4"]
    liked = read_movielens(path, rating_actions="like")
    assert liked["action"].to_list() == ["like", "dislike", "like"]
    strict = read_movielens(path, rating_actions="like", like_threshold=4.5)
    assert strict["action"].to_list() == ["like", "dislike", "dislike"]
    assert read_movielens(path, rating_actions="none")["action"].to_list() == [DEFAULT_ACTION] * 3
    assert rows(liked, "user_id", "item_id", "timestamp")[1] == ("1", "185", 838983525.0)


def test_movielens_csv_with_header(tmp_path):
    path = write(
        tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n"
    )
    events = read_public(path, reader="movielens")
    assert rows(events) == [("1", "296", "rate_5", 1147880044.0), ("1", "306", "rate_3.5", 1147868817.0)]


def test_movielens_errors_name_file_line_and_column(tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\t881250949\n1\t3\t4\t881250950\n1\t4\tfive\t881250951\n")
    with pytest.raises(EventDataError) as error:
        read_movielens(path)
    assert_error(error, path, 3, "rating", "'five' is not a number")
    wrong = write(tmp_path / "ratings.dat", "1::2::3::4\n1:2::3::4\n")
    with pytest.raises(EventDataError) as error:
        read_movielens(wrong)
    assert_error(error, wrong, 2, None, "'::'")
    five_fields = write(tmp_path / "five.data", "1\t2\t3\t881250949\textra\n")
    with pytest.raises(EventDataError) as error:
        read_movielens(five_fields)
    assert_error(error, five_fields, 1, None, "more than the 4 tab-separated fields")
    with pytest.raises(EventDataError, match="rating_actions must be one of"):
        read_movielens(path, rating_actions="stars")


# ---------------------------------------------------------------------------------------------------------------
# RecBole


def test_recbole_inter_fields_and_rating(tmp_path):
    path = write(
        tmp_path / "ml.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\tgenre:token_seq\n"
        "196\t0242\t3\t881250949\tdrama comedy\n"
        "186\t302\t4.5\t891717742\taction\n",
    )
    events = read_recbole(path)
    check_canonical(events)
    assert rows(events) == [("196", "0242", "rate_3", 881250949.0), ("186", "302", "rate_4.5", 891717742.0)]
    assert events["genre"].to_list() == ["drama comedy", "action"]
    assert read_recbole(path, rating_actions="like")["action"].to_list() == ["dislike", "like"]


def test_recbole_sessions_without_user_or_time(tmp_path):
    path = write(tmp_path / "d.inter", "session_id:token\titem_id:token\tprice:float\n9\ta\t1.5\n9\tb\t2\n")
    events = read_public(path, reader="recbole")
    assert rows(events, "user_id", "item_id", "action") == [("9", "a", DEFAULT_ACTION), ("9", "b", DEFAULT_ACTION)]
    assert events["timestamp"].null_count() == 2
    assert events["price"].dtype == pl.Float64 and events["price"].to_list() == [1.5, 2.0]


def test_recbole_errors(tmp_path):
    plain = write(tmp_path / "plain.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(EventDataError) as error:
        read_recbole(plain)
    assert_error(error, plain, 1, "user_id", "name:type")
    path = write(tmp_path / "bad.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\tyesterday\n")
    with pytest.raises(EventDataError) as error:
        read_recbole(path)
    assert_error(error, path, 3, "timestamp", "'yesterday' is not a number")


# ---------------------------------------------------------------------------------------------------------------
# SASRec / BERT4Rec sequence text


def test_sequence_text_keeps_file_order_without_times(tmp_path):
    path = write(tmp_path / "beauty.txt", "1 10\n1 5\n2 7\n\n1 3\n")
    events = read_sequence_text(path)
    check_canonical(events)
    assert rows(events, "user_id", "item_id") == [("1", "10"), ("1", "5"), ("2", "7"), ("1", "3")]
    assert events["timestamp"].null_count() == events.height
    assert build_sequences(events).filter(pl.col("user_id") == "1")["item_id"].to_list() == [["10", "5", "3"]]
    per_user = read_sequence_text(write(tmp_path / "s3rec.txt", "u1 a b c\nu2 d\n"), one_line_per_user=True)
    assert rows(per_user, "user_id", "item_id") == [("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "d")]


def test_sequence_text_error_suggests_layout(tmp_path):
    path = write(tmp_path / "seq.txt", "1 10\n1 11 4 881250949\n")
    with pytest.raises(EventDataError) as error:
        read_sequence_text(path)
    assert_error(error, path, 2, "line", "one_line_per_user=True", "movielens")


# ---------------------------------------------------------------------------------------------------------------
# Amazon

REVIEW_2014 = (
    '{"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald", "helpful": [2, 3], '
    '"reviewText": "I bought this", "overall": 5.0, "summary": "Heavenly", "unixReviewTime": 1252800000, '
    '"reviewTime": "09 13, 2009"}\n'
    '{"reviewerID": "A1", "asin": "B00000AAAA", "overall": 3.0, "unixReviewTime": 1252800001}\n'
)


def test_amazon_2014_json_gz_and_python_dict_lines(tmp_path):
    path = tmp_path / "reviews_Beauty_5.json.gz"
    path.write_bytes(gzip.compress(REVIEW_2014.encode()))
    events = read_amazon(path)
    check_canonical(events)
    expected = [("A2SUAM1J3GNN3B", "0000013714", "rate_5", 1252800000.0), ("A1", "B00000AAAA", "rate_3", 1252800001.0)]
    assert rows(events) == expected
    old_style = write(tmp_path / "old.json", REVIEW_2014.replace('"', "'"))
    assert rows(read_amazon(old_style)) == expected


def test_amazon_2018_json_keeps_verified(tmp_path):
    path = write(
        tmp_path / "All_Beauty_5.json",
        '{"overall": 4.0, "verified": true, "reviewerID": "A3", "asin": "0143026860", "style": {"Size:": " L"}, '
        '"unixReviewTime": 1424304000}\n'
        '{"overall": 1.0, "verified": false, "reviewerID": "A4", "asin": "0143026860", "unixReviewTime": 1424304001}\n',
    )
    events = read_amazon(path, rating_actions="like")
    assert rows(events) == [("A3", "0143026860", "like", 1424304000.0), ("A4", "0143026860", "dislike", 1424304001.0)]
    assert events["verified"].to_list() == [True, False]


def test_amazon_2023_jsonl_milliseconds_and_parent_asin(tmp_path):
    path = write(
        tmp_path / "All_Beauty.jsonl",
        '{"rating": 5.0, "title": "Such a lovely scent", "asin": "B00YQ6X8EO", "parent_asin": "B00YQ6X8EO", '
        '"user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923, "verified_purchase": true}\n'
        '{"rating": 4.0, "asin": "B081TJ8YS3", "parent_asin": "B07PNNCSP9", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", '
        '"timestamp": 1588615855070, "verified_purchase": false}\n',
    )
    events = read_amazon(path)
    assert events["item_id"].to_list() == ["B00YQ6X8EO", "B07PNNCSP9"]
    assert events["asin"].to_list() == ["B00YQ6X8EO", "B081TJ8YS3"]
    assert events["timestamp"].to_list() == [1588687728.923, 1588615855.07]  # milliseconds -> seconds
    assert events["action"].to_list() == ["rate_5", "rate_4"]
    assert read_amazon(path, item_field="asin")["item_id"].to_list() == ["B00YQ6X8EO", "B081TJ8YS3"]


def test_amazon_ratings_csv_layouts(tmp_path):
    v2014 = write(
        tmp_path / "ratings_Beauty.csv",
        "A39HTATAQ9V7YF,0205616461,5.0,1369699200\nAKJHHD5VEH7VG,0558925278,4.0,1404691200\n",
    )
    v2018 = write(
        tmp_path / "All_Beauty.csv",
        "0143026860,A1V6B6TNIC10QE,1.0,1424304000\n0143026860,A2F5GHSXFQ0W6J,4.0,1418860800\n",
    )
    assert rows(read_amazon(v2014), "user_id", "item_id")[0] == ("A39HTATAQ9V7YF", "0205616461")
    assert rows(read_amazon(v2018), "user_id", "item_id")[0] == ("A1V6B6TNIC10QE", "0143026860")
    forced = read_amazon(v2018, csv_layout="user_item")  # the option overrides the guess
    assert rows(forced, "user_id", "item_id")[0] == ("0143026860", "A1V6B6TNIC10QE")
    v2023 = write(tmp_path / "Toys.csv", "user_id,parent_asin,rating,timestamp\nAGKASB,B006GBITXC,3.0,1452647382000\n")
    assert rows(read_amazon(v2023)) == [("AGKASB", "B006GBITXC", "rate_3", 1452647382.0)]


def test_amazon_errors(tmp_path):
    path = write(
        tmp_path / "r.json",
        REVIEW_2014 + '{"reviewerID": "A2", "asin": "B1", "overall": "great", "unixReviewTime": 1}\n',
    )
    with pytest.raises(EventDataError) as error:
        read_amazon(path)
    assert_error(error, path, 3, "overall", "'great' is not a number")
    broken = write(tmp_path / "broken.json", REVIEW_2014 + '{"reviewerID": "A2", "asin": \n')
    with pytest.raises(EventDataError) as error:
        read_amazon(broken)
    assert_error(error, broken, 3, None, "not a JSON object")
    other = write(tmp_path / "other.jsonl", '{"user": "1", "item": "2"}\n')
    with pytest.raises(EventDataError, match="not an Amazon review"):
        read_amazon(other)


# ---------------------------------------------------------------------------------------------------------------
# RetailRocket, Taobao, Tmall


def test_retailrocket_events(tmp_path):
    path = write(
        tmp_path / "events.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433221999827,257597,transaction,355908,4000\n",
    )
    events = read_retailrocket(path)
    check_canonical(events)
    assert rows(events) == [
        ("257597", "355908", "view", 1433221332.117),
        ("992329", "248676", "addtocart", 1433224214.164),
        ("257597", "355908", "transaction", 1433221999.827),
    ]
    assert events["transactionid"].to_list() == [None, None, "4000"]
    bad = write(tmp_path / "bad.csv", "timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,click,2,\n")
    with pytest.raises(EventDataError) as error:
        read_retailrocket(bad)
    assert_error(error, bad, 2, "event", "'click'", "addtocart")


def test_taobao_user_behavior(tmp_path):
    path = write(tmp_path / "UserBehavior.csv", "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n")
    events = read_taobao(path)
    check_canonical(events)
    assert rows(events) == [("1", "2268318", "pv", 1511544070.0), ("1", "2333346", "buy", 1511561733.0)]
    assert events["category_id"].to_list() == ["2520377", "2520771"]
    short = write(tmp_path / "short.csv", "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy\n")
    with pytest.raises(EventDataError) as error:
        read_taobao(short)
    assert_error(error, short, 2, "timestamp", "missing value")
    wrong = write(tmp_path / "wrong.csv", "1,2268318,2520377,4,1511544070\n")
    with pytest.raises(EventDataError) as error:
        read_taobao(wrong)
    assert_error(error, wrong, 1, "behavior_type", "'4'", "pv")


def test_tmall_year_actions_and_same_day_order(tmp_path):
    path = write(
        tmp_path / "t_alibaba_data.csv",
        "user_id,brand_id,type,visit_datetime\n10944750,13451,0,6-4\n10944750,2000,3,6-4\n10944750,13451,1,6-4\n"
        "10944750,777,2,5-31\n",
    )
    events = read_tmall(path)
    check_canonical(events)
    june_4 = epoch(2013, 6, 4)
    assert rows(events) == [
        ("10944750", "13451", "click", june_4),
        ("10944750", "2000", "cart", june_4),
        ("10944750", "13451", "buy", june_4),
        ("10944750", "777", "fav", epoch(2013, 5, 31)),
    ]
    sequence = build_sequences(events).row(0, named=True)  # same day: file order; earlier day first
    assert sequence["item_id"] == ["777", "13451", "2000", "13451"]
    assert sequence["action"] == ["fav", "click", "cart", "buy"]
    assert read_public(path, reader="tmall", year=2014)["timestamp"][0] == epoch(2014, 6, 4)
    headerless = write(tmp_path / "nohead.csv", "1,2,0,4-15\n")
    assert read_tmall(headerless)["timestamp"].to_list() == [epoch(2013, 4, 15)]


def test_tmall_errors(tmp_path):
    path = write(tmp_path / "t.csv", "user_id,brand_id,type,visit_datetime\n1,2,0,6-4\n1,2,7,6-4\n")
    with pytest.raises(EventDataError) as error:
        read_tmall(path)
    assert_error(error, path, 3, "type", "'7'")
    dates = write(tmp_path / "d.csv", "user_id,brand_id,type,visit_datetime\n1,2,0,6-4\n1,2,0,2-29\n")
    with pytest.raises(EventDataError) as error:
        read_tmall(dates)
    assert_error(error, dates, 3, "visit_datetime", "'2-29'", "2013")
    assert read_tmall(dates, year=2012)["timestamp"][1] == epoch(2012, 2, 29)
    with pytest.raises(EventDataError, match="year must be an integer"):
        read_tmall(path, year="2013")


# ---------------------------------------------------------------------------------------------------------------
# YooChoose, Diginetica: sessions are users


def test_yoochoose_clicks_and_buys(tmp_path):
    clicks = write(
        tmp_path / "yc" / "yoochoose-clicks.dat",
        "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,S\n",
    )
    buys = write(tmp_path / "yc" / "yoochoose-buys.dat", "1,2014-04-07T10:54:09.868Z,214536500,0,1\n")
    events = read_yoochoose([clicks, buys])
    check_canonical(events)
    assert rows(events) == [
        ("1", "214536502", "click", epoch(2014, 4, 7, 10, 51, 9) + 0.277),
        ("1", "214536500", "click", epoch(2014, 4, 7, 10, 54, 9) + 0.868),
        ("1", "214536500", "buy", epoch(2014, 4, 7, 10, 54, 9) + 0.868),
    ]
    assert events["category"].to_list() == ["0", "S", None]
    assert events["quantity"].to_list() == [None, None, "1"]
    assert read_public(tmp_path / "yc", reader="yoochoose").equals(events)  # a folder: clicks, then buys
    assert build_sequences(events).row(0, named=True)["action"] == ["click", "click", "buy"]  # tie: click first


def test_yoochoose_prepared_tsv(tmp_path):
    path = write(tmp_path / "yoochoose-clicks-100k.txt", "SessionId\tItemId\tTime\n3\t214716935\t1396437466.94\n")
    events = read_yoochoose(path)
    assert rows(events) == [("3", "214716935", "click", 1396437466.94)]


def test_yoochoose_errors(tmp_path):
    path = write(tmp_path / "clicks.dat", "1,2014-04-07T10:51:09.277Z,214536502,0\n2,07/04/2014 10:51,214536502,0\n")
    with pytest.raises(EventDataError) as error:
        read_yoochoose(path)
    assert_error(error, path, 2, "timestamp", "'07/04/2014 10:51'")
    three = write(tmp_path / "three.dat", "1,2,3\n")
    with pytest.raises(EventDataError, match="has 3 comma-separated fields"):
        read_yoochoose(three)


def test_diginetica_views_and_purchases(tmp_path):
    views = write(
        tmp_path / "dg" / "train-item-views.csv",
        "sessionId;userId;itemId;timeframe;eventdate\n1;;81766;526309;2016-05-09\n1;;31331;1031018;2016-05-09\n"
        "2;278;32118;243569;2016-05-09\n",
    )
    write(
        tmp_path / "dg" / "train-purchases.csv",
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n1;;1100000;2016-05-09;8;31331\n",
    )
    events = read_diginetica(tmp_path / "dg")
    check_canonical(events)
    may_9 = epoch(2016, 5, 9)
    assert rows(events) == [
        ("1", "81766", "view", may_9 + 526.309),
        ("1", "31331", "view", may_9 + 1031.018),
        ("2", "32118", "view", may_9 + 243.569),
        ("1", "31331", "buy", may_9 + 1100.0),
    ]
    assert events["userId"].to_list() == [None, None, "278", None]
    assert events["ordernumber"].to_list() == [None, None, None, "8"]
    assert read_diginetica(views).height == 3
    bad = write(tmp_path / "bad.csv", "sessionId;userId;itemId;timeframe;eventdate\n1;;81766;526309;09/05/2016\n")
    with pytest.raises(EventDataError) as error:
        read_diginetica(bad)
    assert_error(error, bad, 2, "eventdate", "'09/05/2016'")
    comma = write(tmp_path / "comma.csv", "sessionId,userId,itemId,timeframe,eventdate\n")
    with pytest.raises(EventDataError) as error:
        read_diginetica(comma)
    assert_error(error, comma, 1, "sessionId", "lacks")


# ---------------------------------------------------------------------------------------------------------------
# dispatch and the recipe hook


def test_read_public_dispatch_and_option_errors(tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\t881250949\n")
    assert read_public(path, reader="movielens").equals(read_movielens(path))
    with pytest.raises(EventDataError, match="Did you mean 'movielens'"):
        read_public(path, reader="movielense")
    with pytest.raises(EventDataError, match=r"no option\(s\) \['year'\]"):
        read_public(path, reader="movielens", year=2013)
    generic = write(tmp_path / "log.csv", "user_id,item_id\n007,a\n")
    assert read_public(generic)["user_id"].to_list() == ["007"]
    assert set(READERS) == {
        "movielens", "recbole", "sequence_text", "inter_json", "amazon", "retailrocket", "taobao", "tmall",
        "yoochoose", "diginetica",
    }  # fmt: skip


def test_recipe_reads_dataset_with_reader(tmp_path):
    from bertrec.args import ConfigError, DataArguments
    from bertrec.recipes.common import load_events

    path = write(tmp_path / "t.csv", "user_id,brand_id,type,visit_datetime\n1,2,1,6-4\n")
    events = load_events(DataArguments(dataset=str(path), reader="tmall"))
    assert rows(events) == [("1", "2", "buy", epoch(2013, 6, 4))]
    with pytest.raises(ConfigError, match="--user_column"):
        load_events(DataArguments(dataset=str(path), reader="tmall", user_column="uid"))


# ---------------------------------------------------------------------------------------------------------------
# download helper (offline: a local HTTP server and file:// URLs)


def make_zip(path: Path, members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on tmp_path/served; yields (base_url, requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()


def test_download_extracts_verifies_and_is_idempotent(server, tmp_path):
    base, served, requests = server
    data = make_zip(served / "ml-tiny.zip", {"ml-tiny/u.data": b"1\t2\t3\t881250949\n", "ml-tiny/README": b"hi"})
    entry = RemoteDataset(
        name="ml-tiny",
        url=f"{base}/ml-tiny.zip",
        target="ml-tiny",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
    )
    dest = tmp_path / "data"
    result = download(entry, dest)
    assert result == dest / "ml-tiny" and (result / "u.data").is_file()  # the top-level folder is dropped
    assert read_movielens(result)["item_id"].to_list() == ["2"]
    assert sorted(p.name for p in dest.iterdir()) == ["ml-tiny"]  # no temporary files left
    assert download(entry, dest) == result and len(requests) == 1  # second call: no network
    download(entry, dest, force=True)
    assert len(requests) == 2


def test_download_rejects_bad_checksum_and_leaves_nothing(server, tmp_path):
    base, served, _ = server
    (served / "t.csv").write_text("user_id,brand_id,type,visit_datetime\n1,2,0,6-4\n")
    dest = tmp_path / "data"
    bad = RemoteDataset(name="t", url=f"{base}/t.csv", target="t.csv", sha256="0" * 64)
    with pytest.raises(DownloadError, match="did not verify"):
        download(bad, dest)
    assert list(dest.iterdir()) == []
    with pytest.raises(DownloadError, match="failed"):
        download(RemoteDataset(name="gone", url=f"{base}/missing.zip", target="gone"), dest)
    assert list(dest.iterdir()) == []


def test_download_refuses_path_traversal(server, tmp_path):
    base, served, _ = server
    make_zip(served / "evil.zip", {"ok/readme.txt": b"fine", "../../escaped.txt": b"owned"})
    dest = tmp_path / "deep" / "data"
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        download(RemoteDataset(name="evil", url=f"{base}/evil.zip", target="evil"), dest)
    assert list(dest.iterdir()) == []
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("readme.txt"))
    make_zip(served / "abs.zip", {"/tmp/absolute.txt": b"owned"})
    with pytest.raises(UnsafeArchiveError):
        download(RemoteDataset(name="abs", url=f"{base}/abs.zip", target="abs"), dest)


def test_download_file_url(tmp_path):
    source = write(tmp_path / "src" / "beauty.txt", "1 1\n1 2\n")
    entry = RemoteDataset(name="beauty", url=source.as_uri(), target="beauty.txt", size=8)
    result = download(entry, tmp_path / "data")
    assert result.read_text() == "1 1\n1 2\n"
    with pytest.raises(ValueError, match="unknown dataset"):
        download("no-such-dataset", tmp_path / "data")
