"""The CSV executor's Beam PTransform on Beam's DirectRunner (TestPipeline + assert_that):
missing-value markers, byte-order mark, quoting, CRLF, delimiters, gzip, type inference."""
import gzip
import json

import modules  # noqa: F401  (tf_keras before tensorflow)

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from components.csv_example_gen.executor import (COLUMNS_FILE, CsvToExamples,
                                                 csv_settings, custom_config)
from modules import csvfile
from modules.settings import Csv


def _value(feature: tf.train.Feature):
    """The one value of a feature, or None when it is empty (a missing value)."""
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if not values:
        return None
    return values[0].decode("utf-8") if isinstance(values[0], bytes) else values[0]


def _row(example: tf.train.Example):
    return tuple(sorted((name, _value(f)) for name, f in example.features.feature.items()))


def _kinds(example: tf.train.Example):
    return [(name, f.WhichOneof("kind")) for name, f in example.features.feature.items()
            if f.WhichOneof("kind")]


def check(files, rows, kinds, csv=Csv()):
    """Runs the transform in a TestPipeline: its examples must be `rows` (sorted (column,
    value) tuples, None for missing) and each column's feature kind as in `kinds`."""
    with TestPipeline() as pipeline:
        examples = (pipeline | CsvToExamples([str(f) for f in files], csv)
                    | "Parse" >> beam.Map(tf.train.Example.FromString))
        assert_that(examples | "Rows" >> beam.Map(_row), equal_to(rows), label="rows")
        assert_that(examples | "Kinds" >> beam.FlatMap(_kinds) | beam.Distinct(),
                    equal_to(list(kinds.items())), label="kinds")


def write(path, text: str, encoding="utf-8", compress=False):
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_markers_are_missing_in_numeric_text_and_label_columns_and_types_ignore_them(tmp_path):
    """An R export: NA in a numeric column (still int), a text column and the label."""
    path = write(tmp_path / "r.csv", 'id,weight,island,label\n'
                                     '1,3750,Torgersen,Adelie\n'
                                     '2,NA,NA,Gentoo\n'
                                     '3,3800,Biscoe,NA\n'
                                     '4,,N/A,Adelie\n')
    check([path], [
        (("id", 1), ("island", "Torgersen"), ("label", "Adelie"), ("weight", 3750)),
        (("id", 2), ("island", None), ("label", "Gentoo"), ("weight", None)),
        (("id", 3), ("island", "Biscoe"), ("label", None), ("weight", 3800)),
        (("id", 4), ("island", None), ("label", "Adelie"), ("weight", None))],
        {"id": "int64_list", "weight": "int64_list", "island": "bytes_list",
         "label": "bytes_list"})


def test_markers_off_keeps_them_as_text(tmp_path):
    path = write(tmp_path / "r.csv", "x,y\nNA,1\n2,NULL\n")
    check([path], [(("x", "2"), ("y", "NULL")), (("x", "NA"), ("y", "1"))],
          {"x": "bytes_list", "y": "bytes_list"}, Csv(na_values=()))


def test_byte_order_mark_crlf_and_quoted_fields(tmp_path):
    """Excel's 'CSV UTF-8': a BOM, CRLF, and quotes holding commas, quotes and a newline."""
    path = write(tmp_path / "excel.csv",
                 '\ufeffname,note,price\r\n'
                 '"Smith, J.","said ""hi""",1.5\r\n'
                 'Ünïcode,"two\r\nlines",2\r\n')
    check([path], [(("name", "Smith, J."), ("note", 'said "hi"'), ("price", 1.5)),
                   (("name", "Ünïcode"), ("note", "two\r\nlines"), ("price", 2.0))],
          {"name": "bytes_list", "note": "bytes_list", "price": "float_list"})


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimiters_with_a_decimal_comma(tmp_path, delimiter):
    """A European spreadsheet's CSV: with --decimal , its decimal commas are numbers."""
    path = write(tmp_path / "d.csv", delimiter.join(["a", "b"]) + "\n"
                 + delimiter.join(["1,5", "x"]) + "\n" + delimiter.join(["2", "y"]) + "\n")
    check([path], [(("a", 1.5), ("b", "x")), (("a", 2.0), ("b", "y"))],
          {"a": "float_list", "b": "bytes_list"}, Csv(delimiter=delimiter, decimal=","))


def test_decimal_commas_without_decimal_stop_the_run_naming_the_column(tmp_path):
    """Never read as text silently: numbers with a decimal comma (alone, or mixed with a
    decimal point) while the decimal mark is "." stop with the column and --decimal."""
    for name, values in (("comma", ["129,0", "0,946", "800"]),
                         ("mixed", ["1,5", "2.5", "3"])):
        path = write(tmp_path / f"{name}.csv", "income;label\n" + "".join(
            f"{v};{i % 2}\n" for i, v in enumerate(values)))
        with pytest.raises(Exception, match=r"line 2, column 'income': values such as "
                                             r"'1?[,0-9]+' are numbers with a decimal comma; "
                                             r"pass --decimal ,"):
            check([path], [], {}, Csv(delimiter=";"))


def test_with_decimal_comma_a_decimal_point_is_text(tmp_path):
    """As pandas' decimal=',': "2.5" is not a number then (it could be 2,500)."""
    path = write(tmp_path / "mixed.csv", "x;y\n1,5;0\n2.5;1\n")
    check([path], [(("x", "1,5"), ("y", 0)), (("x", "2.5"), ("y", 1))],
          {"x": "bytes_list", "y": "int64_list"}, Csv(delimiter=";", decimal=","))


def _ids_csv(tmp_path, rows=40):
    """An integer row number, a customer code, an integer id with gaps, a unique float
    amount, a repeated integer and a label."""
    lines = ["row,customer,CustomerId,amount,visits,label"]
    for i in range(rows):
        lines.append(f"{i + 1},C-{1000 + 7 * i:05d},{15_600_000 + 97 * i},{i * 3.17 + 0.5:.2f},"
                     f"{i % 5},{'yes' if i % 3 else 'no'}")
    return write(tmp_path / "ids.csv", "\n".join(lines) + "\n")


def test_identifier_columns_are_left_out_and_a_unique_amount_is_kept(tmp_path):
    path = _ids_csv(tmp_path)
    with TestPipeline() as pipeline:
        examples = (pipeline | CsvToExamples([str(path)], Csv(), str(tmp_path / "out"))
                    | beam.Map(tf.train.Example.FromString))
        assert_that(examples | beam.FlatMap(lambda e: list(e.features.feature))
                    | beam.Distinct(), equal_to(["amount", "visits", "label"]))
    plan = {c["name"]: c for c in json.loads(
        (tmp_path / "out" / COLUMNS_FILE).read_text())["columns"]}
    assert "row numbers" in plan["row"]["left_out"]
    assert "text with 40 different values in 40 rows" in plan["customer"]["left_out"]
    assert "named as an identifier" in plan["CustomerId"]["left_out"]
    assert plan["amount"]["left_out"] is None and plan["amount"]["type"] == "float"
    assert plan["visits"] == {"name": "visits", "left_out": None, "type": "int",
                              "values": 40, "missing": 0, "numbers": 40, "min": 0.0,
                              "max": 4.0, "distinct": 5, "distinct_of": 40}


def test_keep_uses_an_identifier_anyway(tmp_path):
    with TestPipeline() as pipeline:
        examples = (pipeline | CsvToExamples([str(_ids_csv(tmp_path))], Csv(keep=("row",)))
                    | beam.Map(tf.train.Example.FromString))
        assert_that(examples | beam.FlatMap(lambda e: list(e.features.feature))
                    | beam.Distinct(), equal_to(["row", "amount", "visits", "label"]))


def test_gzip_files_and_types_inferred_over_all_files(tmp_path):
    first = write(tmp_path / "part1.csv.gz", "n,m,empty\n1,1,\n2,2,NA\n", compress=True)
    second = write(tmp_path / "part2.csv", "n,m,empty\n3,2.5,\n")
    check([first, second], [(("empty", None), ("m", 1.0), ("n", 1)),
                            (("empty", None), ("m", 2.0), ("n", 2)),
                            (("empty", None), ("m", 2.5), ("n", 3))],
          {"n": "int64_list", "m": "float_list"})


def test_wrong_field_count_and_non_utf8_text_name_the_file(tmp_path):
    short = write(tmp_path / "short.csv", "a,b\n1,2\n3\n")
    with pytest.raises(Exception, match=r"short\.csv, line 3: 1 fields"):
        check([short], [], {})
    latin = write(tmp_path / "latin.csv", "a,b\ncafé,1\n", encoding="latin-1")
    with pytest.raises(csvfile.CsvFormatError, match=r"latin\.csv: not UTF-8"):
        with csvfile.open_binary(str(latin)) as binary:
            list(csvfile.read_rows(binary, str(latin)))


def test_different_headers_are_refused(tmp_path):
    first = write(tmp_path / "a.csv", "x,y\n1,2\n")
    second = write(tmp_path / "b.csv", "x,z\n1,2\n")
    with pytest.raises(csvfile.CsvFormatError, match="header differs"):
        check([first, second], [], {})


def test_the_csv_settings_travel_in_example_gens_custom_config():
    from tfx.utils import proto_utils

    csv = Csv(na_values=("?",), delimiter=";", decimal=",", keep=("id",))
    text = proto_utils.proto_to_json(custom_config(csv))
    assert csv_settings({"custom_config": text}) == csv
    assert csv_settings({}) == Csv()


def test_an_unnamed_column_is_left_out(tmp_path):
    """R's write.csv with its default row.names = TRUE: the first header cell is empty."""
    path = write(tmp_path / "rownames.csv", '"","x","label"\n"1",2.5,"a"\n"2",NA,"b"\n')
    check([path], [(("label", "a"), ("x", 2.5)), (("label", "b"), ("x", None))],
          {"x": "float_list", "label": "bytes_list"})


def test_executor_writes_every_row_to_gzip_tfrecord_splits_by_hash(tmp_path):
    """The executor as FileBasedExampleGen runs it: train and eval splits partitioned by hash
    (4:1), every row written once to GZIP TFRecords, the artifact's split names and formats
    set as TFX's readers (StatisticsGen, tfx-bsl) expect."""
    from tfx.components.util import examples_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as keys
    from tfx.utils import proto_utils

    from components.csv_example_gen.executor import Executor

    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "data.csv",
          "n,label\n" + "".join(f"{i},{i % 3}\n" for i in range(500)))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    split_config = example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)])
    Executor().Do({}, {keys.EXAMPLES_KEY: [examples]}, {
        keys.INPUT_BASE_KEY: str(tmp_path / "in"),
        keys.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern="*.csv")])),
        keys.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Output(split_config=split_config)),
        # n, a row number, would be left out as an identifier
        keys.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(custom_config(Csv(keep=("n",)))),
    })
    plan = json.loads((tmp_path / "out" / COLUMNS_FILE).read_text())["columns"]
    assert [(c["name"], c["type"], c["values"]) for c in plan] == [("n", "int", 500),
                                                                  ("label", "int", 500)]
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    assert examples_utils.get_payload_format(examples) == example_gen_pb2.FORMAT_TF_EXAMPLE
    assert examples_utils.get_file_format(examples) == "tfrecords_gzip"
    values = {}
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(artifact_utils.get_split_uri([examples], split) + "/*.gz")
        values[split] = [tf.train.Example.FromString(r.numpy()).features.feature["n"]
                         .int64_list.value[0]
                         for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(values["train"] + values["eval"]) == list(range(500))
    assert 60 <= len(values["eval"]) <= 140  # about a fifth
