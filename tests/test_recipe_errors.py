"""Bad input reaches the user as one clear line naming the file/row/column, never a deep library traceback."""

import json

import pytest

from bertrec.cli import run_recipe

QUICK = ["--num_epochs", "1", "--hidden_size", "16", "--num_layers", "1", "--max_events", "5"]


def run(capsys, tmp_path, *args):
    with pytest.raises(SystemExit) as exit_info:
        run_recipe("pretrain", [*args, *QUICK, "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "Traceback" not in message
    return message


def test_missing_column(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("uid,sku,ts\n1,a,10\n")
    message = run(capsys, tmp_path, "--dataset", str(log), "--user_column", "uid")
    assert "log.csv" in message and "item_id" in message and "sku" in message


def test_unparseable_timestamp(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n1,a,10\n1,b,yesterday\n")
    message = run(capsys, tmp_path, "--dataset", str(log))
    assert "log.csv" in message and "yesterday" in message and "timestamp" in message


def test_empty_file(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("")
    assert "log.csv" in run(capsys, tmp_path, "--dataset", str(log))


def test_users_with_one_event_are_counted_drops(tmp_path, capsys):
    rows = ["user_id,item_id,timestamp"] + [f"u{u},i{(u + k) % 7},{k}" for u in range(30) for k in range(6)]
    rows += ["lonely,i1,3"]
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    run_recipe("pretrain", ["--dataset", str(log), "--layout", "item", *QUICK, "--output_dir", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "cleaning_report.json").read_text())
    assert report["dropped"]["min_user_events"] == 1
    assert report["input_rows"] == 181 and report["output_rows"] == 180


def test_unknown_option_value(tmp_path, capsys):
    message = run(capsys, tmp_path, "--model_type", "xlnet")
    assert "--model_type 'xlnet'" in message and "bert" in message


def test_the_delimiter_the_error_suggests_works_on_the_command_line(tmp_path, capsys):
    rows = ["user_id;item_id;timestamp"] + [f"u{u};i{(u + k) % 7};{k}" for u in range(30) for k in range(6)]
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    message = run(capsys, tmp_path, "--dataset", str(log))
    assert "--delimiter ';'" in message
    run_recipe(
        "pretrain",
        ["--dataset", str(log), "--delimiter", ";", "--layout", "item", *QUICK, "--output_dir", str(tmp_path / "out")],
    )
    assert json.loads((tmp_path / "out" / "cleaning_report.json").read_text())["output_rows"] == 180


def test_text_vectors_without_item_features_are_refused(tmp_path, capsys):
    rows = ["user_id,item_id,timestamp"] + [f"u{u},i{(u + k) % 7},{k}" for u in range(30) for k in range(6)]
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    message = run(capsys, tmp_path, "--dataset", str(log), "--layout", "item", "--item_text_vectors", "true")
    assert "--item_text_vectors needs --item_features" in message
