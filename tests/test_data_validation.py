"""Specification of the readers' validation: every broken input becomes a problem that names the file, the row,
the id and the field (or, for a file that cannot be read at all, the file and the reason), never a traceback.

Small broken files are written under tmp_path; the real files in `../shared/data` are only read.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pandas as pd
import pytest
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.data.io import read_pairs, write_pairs
from arenapref.data.problems import DataError
from arenapref.data.record import A_WINS, B_WINS, TIE, PairRecord

HEADER = "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie"


def read_error(path, **kw) -> DataError:
    with pytest.raises(DataError) as exc:
        read_pairs(path, **kw)
    return exc.value


def fatal(report):
    return [p for p in report.problems if p.fatal]


def records(n: int = 3, soft=None) -> list[PairRecord]:
    return [PairRecord(id=str(i), prompt=(f"question {i}",), response_a=(f"answer a {i}",), response_b=(f"answer b {i}",),
                       label=i % 3, soft_label=soft, model_a="m1", model_b="m2", source="mine") for i in range(1, n + 1)]


# -------------------------------------------------- a. canonical CSV with whitespace around an id


def test_canonical_csv_with_spaces_around_ids_reads_back_stripped_with_its_soft_labels(tmp_path):
    recs = [replace(r, soft_label=(0.5, 0.25, 0.25)) for r in records()]
    path = write_pairs(recs, tmp_path / "canonical.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["id"] = [" 1", "2 ", " 3 "]
    df.to_csv(path, index=False)
    back, report = read_pairs(path)  # was: KeyError ' 1' from _restore_columns
    assert [r.id for r in back] == ["1", "2", "3"]
    assert [r.soft_label for r in back] == [(0.5, 0.25, 0.25)] * 3
    assert {r.source for r in back} == {"mine"} and fatal(report) == []


def test_canonical_csv_whose_ids_collide_after_stripping_names_the_row(tmp_path):
    path = write_pairs(records(2), tmp_path / "canonical.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["id"] = ["7", " 7"]
    df.to_csv(path, index=False)
    (p,) = fatal(read_error(path))
    assert (p.row, p.id, p.field) == (2, "7", "id") and "duplicate id" in p.message


# ---------------------------------------------------------------- b. truncated or damaged gzip


@pytest.mark.parametrize("name", ["train.csv.gz", "pairs.jsonl.gz"])
def test_truncated_gzip_is_a_data_error_saying_so(tmp_path, name):
    whole = tmp_path / ("whole" + name)
    if name.endswith(".csv.gz"):
        text = HEADER + "\n" + "".join(f'{i},m1,m2,"[""q{i}""]","[""a""]","[""b""]",1,0,0\n' for i in range(2000))
    else:
        text = "".join(json.dumps({"chosen": f"\n\nHuman: q{i}\n\nAssistant: a", "rejected": f"\n\nHuman: q{i}\n\nAssistant: b"}) + "\n"
                       for i in range(2000))
    whole.write_bytes(gzip.compress(text.encode()))
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    err = read_error(cut)  # was: EOFError, shown by click as "Aborted."
    (p,) = fatal(err)
    assert p.file == str(cut) and p.row is None
    assert "truncated" in p.message and "again" in p.message


def test_file_named_gz_that_is_not_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "train.csv.gz"
    path.write_text(HEADER + "\n", encoding="utf-8")
    (p,) = fatal(read_error(path))
    assert p.file == str(path) and "not a valid gzip file" in p.message


def test_corrupt_gzip_data_is_a_data_error(tmp_path):
    data = bytearray(gzip.compress(("\n".join(json.dumps({"x": i}) for i in range(500))).encode()))
    data[20:40] = b"\xff" * 20  # damage the deflate stream, keep the header
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(bytes(data))
    (p,) = fatal(read_error(path))
    assert p.file == str(path) and "cannot read" in str(p)


# ------------------------------------------------------------------------- c. float ids in parquet


def test_integral_float_ids_from_parquet_are_written_as_integers(tmp_path):
    df = pd.DataFrame({"id": [4206.0, float("nan"), 17.0], "prompt": ['["q1"]', '["q2"]', '["q3"]'],
                       "response_a": ['["a"]'] * 3, "response_b": ['["b"]'] * 3})
    path = tmp_path / "test.parquet"
    df.to_parquet(path)
    recs, report = read_pairs(path, strict=False)
    assert [r.id for r in recs] == ["4206", "17"]  # was "4206.0", "17.0"
    assert [(p.row, p.field) for p in fatal(report)] == [(2, "id")]  # the NaN id, named by its row


def test_float_ids_are_integers_in_every_reader(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"uid": u, "q": "Hi", "good": "a", "bad": "b"}) + "\n" for u in (12.0, 13.5)))
    recs, _ = read_pairs(path, mapping={"id": "uid", "prompt": "q", "chosen": "good", "rejected": "bad"})
    assert [r.id for r in recs] == ["12", "13.5"]
    csv_path = tmp_path / "test.csv"
    csv_path.write_text("id,prompt,response_a,response_b\n4206.0,\"[\"\"q\"\"]\",\"[\"\"a\"\"]\",\"[\"\"b\"\"]\"\n")
    assert [r.id for r in read_pairs(csv_path)[0]] == ["4206"]


# ------------------------------------------------------------------------------------ d. soft labels


@pytest.mark.parametrize("cell, says", [
    ("[2, -1, 0]", "cannot be negative"),
    ("[0.9, 0.9, 0.9]", "sum to 1"),
    ("[0.5, 0.5]", "got 2 values"),
    ('["a", "b", "c"]', "expected 3 numbers"),
    ("[0.5, 0.5, ", "not valid JSON"),
    ('"0.5"', "got str"),
    ("[NaN, 0.5, 0.5]", "finite"),
    ("[true, false, false]", "expected 3 numbers"),
], ids=["negative", "sum-2.7", "two-values", "strings", "bad-json", "json-string", "nan", "booleans"])
def test_invalid_soft_label_is_a_problem_naming_file_row_id_and_field(tmp_path, cell, says):
    path = write_pairs(records(3, soft=(0.2, 0.3, 0.5)), tmp_path / "canonical.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[1, "soft_label"] = cell
    df.to_csv(path, index=False)
    err = read_error(path)
    (p,) = fatal(err)
    assert (p.file, p.row, p.id, p.field) == (str(path), 2, "2", "soft_label")
    assert says in p.message
    recs, _ = read_pairs(path, strict=False)
    assert [r.id for r in recs] == ["1", "3"]  # the bad row is not trained on


def test_soft_label_off_by_rounding_is_renormalised_and_counted(tmp_path):
    path = write_pairs(records(2), tmp_path / "canonical.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["soft_label"] = ["[0.333, 0.333, 0.333]", "[0.2, 0.3, 0.5]"]
    df.to_csv(path, index=False)
    recs, report = read_pairs(path)
    assert recs[0].soft_label == pytest.approx((1 / 3, 1 / 3, 1 / 3)) and sum(recs[0].soft_label) == pytest.approx(1, abs=1e-12)
    assert recs[1].soft_label == (0.2, 0.3, 0.5)
    assert report.counts["soft_labels_renormalised"] == 1


def test_soft_labels_in_parquet_and_jsonl_are_validated_too(tmp_path):
    for suffix in (".parquet", ".jsonl"):
        path = write_pairs(records(2, soft=(0.2, 0.3, 0.5)), tmp_path / f"canonical{suffix}")
        df = pd.read_parquet(path) if suffix == ".parquet" else pd.read_json(path, lines=True, dtype=False)
        df["soft_label"] = ["[0.2, 0.3, 0.5]", "[1, 1, 1]"]
        df.to_parquet(path) if suffix == ".parquet" else df.to_json(path, orient="records", lines=True)
        (p,) = fatal(read_error(path))
        assert (p.row, p.id, p.field) == (2, "2", "soft_label"), suffix


def test_data_validate_lists_invalid_soft_labels(tmp_path, monkeypatch):
    path = write_pairs(records(3, soft=(0.2, 0.3, 0.5)), tmp_path / "canonical.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["soft_label"] = ["[2, -1, 0]", "[0.2, 0.3, 0.5]", "[0.9, 0.9, 0.9]"]
    df.to_csv(path, index=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "validate", "canonical.csv"])
    out = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "row 1, id 1, field 'soft_label'" in out and "row 3, id 3, field 'soft_label'" in out
    assert "2 error(s)" in out


# --------------------------------------------------------------------------- e. other encodings


def test_latin1_csv_is_reported_with_its_line_and_how_to_re_encode(tmp_path):
    path = tmp_path / "train.csv"
    text = HEADER + "\n" + '1,m1,m2,"[""Hi""]","[""a""]","[""b""]",1,0,0\n' + '2,m1,m2,"[""Caf\xe9?""]","[""a""]","[""b""]",0,1,0\n'
    path.write_bytes(text.encode("latin-1"))
    (p,) = fatal(read_error(path))
    assert p.file == str(path)
    assert "line 3" in p.message and "0xe9" in p.message and "not UTF-8" in p.message
    assert "Latin-1" in p.message and "iconv" in p.message


def test_utf16_with_byte_order_mark_is_read_with_a_warning(tmp_path):
    path = tmp_path / "train.csv"
    text = HEADER + "\n" + '1,m1,m2,"[""Café?""]","[""a""]","[""b""]",1,0,0\n'
    path.write_bytes(text.encode("utf-16"))  # Python writes the BOM
    recs, report = read_pairs(path)
    assert recs[0].prompt == ("Café?",) and recs[0].label == A_WINS
    (w,) = [p for p in report.problems if not p.fatal]
    assert "UTF-16" in w.message


def test_utf16_without_byte_order_mark_is_refused_saying_what_it_looks_like(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(json.dumps({"chosen": "\n\nHuman: hé\n\nAssistant: a", "rejected": "x"}).encode("utf-16-le"))
    (p,) = fatal(read_error(path))
    assert "UTF-16" in p.message and "line 1" in p.message


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: a",
                                                   "rejected": "\n\nHuman: q\n\nAssistant: b"}).encode() + b"\n")
    (r,), report = read_pairs(path)
    assert r.prompt == ("q",) and report.problems == []


# ------------------------------------------------------------------------------ f. short CSV rows


def test_short_csv_row_is_reported_as_having_n_of_m_cells(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "\n"
                    + '1,m1,m2,"[""Hi""]","[""a""]","[""b""]",1,0,0\n'
                    + '2,m1,m2,"[""Hi""]"\n'                          # cut off after the prompt
                    + '3,m1,m2,"[""Yo""]","[""a""]","[""b""]",0,0,1\n', encoding="utf-8")
    err = read_error(path)
    (p,) = fatal(err)  # was: three "not valid JSON" problems, one per empty field
    assert (p.row, p.id) == (2, "2")
    assert "has 4 of 9 cells" in p.message and "line 3" in p.message
    recs, _ = read_pairs(path, strict=False)
    assert [r.id for r in recs] == ["1", "3"] and recs[1].label == TIE


def test_long_csv_row_is_reported_and_the_rest_of_the_file_is_read(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "\n"
                    + '1,m1,m2,"[""Hi""]","[""a""]","[""b""]",1,0,0\n'
                    + '2,m1,m2,["Hi, there"],"[""a""]","[""b""]",1,0,0\n'  # unquoted comma: 10 cells
                    + '3,m1,m2,"[""Yo""]","[""a""]","[""b""]",0,1,0\n', encoding="utf-8")
    recs, report = read_pairs(path, strict=False)
    assert [r.id for r in recs] == ["1", "3"]
    (p,) = fatal(report)
    assert (p.row, p.id) == (2, "2") and "has 10 of 9 cells" in p.message


# ----------------------------------------------------------------- g. labels="ignore" for prediction


def test_partial_label_columns_are_ignored_when_labels_are_not_needed(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("id,prompt,response_a,response_b,winner_model_a\n"
                    '1,"[""Hi""]","[""a""]","[""b""]",1\n2,"[""Yo""]","[""a""]","[""b""]",\n', encoding="utf-8")
    assert "all three label columns" in str(read_error(path))
    recs, report = read_pairs(path, labels="ignore")
    assert [r.id for r in recs] == ["1", "2"]
    assert all(r.label is None and r.soft_label is None for r in recs) and report.problems == []


def test_malformed_labels_and_soft_labels_are_ignored_when_labels_are_not_needed(tmp_path):
    path = write_pairs(records(3, soft=(0.2, 0.3, 0.5)), tmp_path / "canonical.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[0, "winner_model_a"] = "yes"
    df.loc[1, "soft_label"] = "[2, -1, 0]"
    df.to_csv(path, index=False)
    assert len(fatal(read_error(path))) == 2
    recs, _ = read_pairs(path, labels="ignore")
    assert [r.id for r in recs] == ["1", "2", "3"] and all(r.target() is None for r in recs)
    assert [r.prompt for r in recs] == [r.prompt for r in records(3)]


def test_labels_ignore_applies_to_every_reader(shared_data):
    for sub in ("pandalm", "llmbar/LLMBar_Natural", "llmfao", "tulu-human-eval", "arena-votes"):
        recs, report = read_pairs(shared_data / sub, labels="ignore")
        assert recs and all(r.label is None and r.soft_label is None for r in recs), sub
        assert fatal(report) == []


def test_unknown_labels_mode_is_a_usage_error(tmp_path):
    from arenapref.errors import UsageError

    with pytest.raises(UsageError, match="labels="):
        read_pairs(tmp_path, labels="skip")


# ------------------------------------------------------------------------------------- JSON lines


def test_json_lines_inside_a_json_file_are_read(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text("\n".join(json.dumps({"input": f"q{i}", "output_1": "a", "output_2": "b", "label": 1 + i % 2})
                              for i in range(3)) + "\n", encoding="utf-8")
    recs, report = read_pairs(path)  # was: "Extra data"
    assert [r.label for r in recs] == [A_WINS, B_WINS, A_WINS] and report.problems == []


def test_bad_line_in_json_lines_names_the_line(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text('{"input": "q", "output_1": "a", "output_2": "b", "label": 1}\n{"input": "q2", oops}\n', encoding="utf-8")
    (p,) = fatal(read_error(path))
    assert "line 2" in p.message and "not valid JSON" in p.message


def test_jsonl_file_holding_one_json_list_is_read(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps([{"input": "q", "output_1": "a", "output_2": "b", "label": 2}]), encoding="utf-8")
    (r,), _ = read_pairs(path)
    assert r.label == B_WINS


def test_json_row_that_is_not_an_object_names_its_row(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"input": "q", "output_1": "a", "output_2": "b", "label": 1}\n5\n', encoding="utf-8")
    recs, report = read_pairs(path, strict=False)
    assert len(recs) == 1 and [(p.row, "JSON object" in p.message) for p in fatal(report)] == [(2, True)]
