"""Validating a site's data file: every issue kind, row and column numbers, no cell values."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from client_app.datasets.inspection import inspect
from client_app.datasets.validation import POLICY_CHOICES, Issue, Policy, ValidationReport
from common.datasets import csv_bytes, load_bundled
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, bundled_plan_path, load_plan, parse_plan

PLAN_TOML = """
[study]
name = "cohort"
seed = 3

[dataset]
name = "cohort"
features = ["age", "bmi", "sbp"]
label = "outcome"
sensitive = "sex"

[dataset.columns.age]
type = "integer"
unit = "years"
min = 0
max = 120

[dataset.columns.bmi]
type = "number"
unit = "kg/m^2"
min = 10
max = 80

[dataset.columns.outcome]
type = "binary"

[dataset.columns.sex]
type = "category"
categories = ["F", "M"]

[model]
kind = "logreg"

[training]
rounds = 1
local_epochs = 1
batch_size = 8
learning_rate = 0.1

[privacy]
target_epsilon = 2.0
delta = 1e-5
max_grad_norm = 1.0
update_clip = 5.0
"""
PLAN = parse_plan(PLAN_TOML)
HEADER = ["patient_id", "age", "bmi", "sbp", "sex", "outcome"]
#: A value and an id planted in bad rows: no report may ever show them.
SECRET_VALUE = "987654.321"
SECRET_ID = "PATIENT-SECRET-77"


def base_rows(n: int = 40) -> list[list[str]]:
    """A clean cohort: unique ids, values in range, no outlier, balanced labels."""
    return [[f"P{i:03d}", str(30 + i % 40), f"{20 + (i % 10) * 0.5:g}", str(110 + i % 20),
             "FM"[i % 2], str((i // 2) % 2)] for i in range(1, n + 1)]


def to_csv(rows: list[list[str]], header: list[str] = HEADER, delimiter: str = ",") -> bytes:
    lines = [delimiter.join(header), *(delimiter.join(r) for r in rows)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def to_parquet(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    columns: dict[str, list[object]] = {}
    for index, name in enumerate(header):
        cells = [r[index] for r in rows]
        try:
            columns[name] = [float(c) if c else None for c in cells]
        except ValueError:
            columns[name] = [c or None for c in cells]
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def check(content: bytes, plan: StudyPlan = PLAN, name: str = "cohort.csv") -> ValidationReport:
    return inspect(content, source_name=name, spec=plan.dataset).report


def only(report: ValidationReport, kind: str) -> Issue:
    found = [i for i in report.issues if i.kind == kind]
    assert len(found) == 1, report.to_text()
    return found[0]


def test_a_clean_file_has_no_issues_and_counts_labels() -> None:
    report = check(to_csv(base_rows()))
    assert report.ok and not report.blocking, report.to_text()
    assert report.rows == 40 and report.columns == tuple(HEADER)
    assert report.label_counts == {"0": 20, "1": 20}
    assert report.source_format == "csv" and len(report.source_hash) == 64
    assert "no issues" in report.to_text()


@pytest.mark.parametrize("study", ["breast_cancer", "diabetes", "digits"])
def test_the_bundled_data_meets_its_study_dictionary(study: str) -> None:
    report = check(csv_bytes(load_bundled(study)), load_plan(bundled_plan_path(study)))
    assert not report.blocking
    assert report.issue_kinds <= {"outlier"}, report.to_text()  # real data has real outliers


def test_a_file_that_is_not_utf8_is_blocking_and_names_the_line() -> None:
    content = to_csv(base_rows()).replace(b"P003", b"P\xe9003")
    issue = only(check(content), "encoding")
    assert issue.blocking and issue.rows == ()  # no row was read: the file says where
    assert "line 4: the file is not UTF-8 text" in issue.message


def test_a_utf16_file_is_refused_as_an_encoding_problem() -> None:
    content = to_csv(base_rows()).decode().encode("utf-16")
    assert "UTF-16" in only(check(content), "encoding").message


@pytest.mark.parametrize(("delimiter", "said"), [(";", "';'"), ("\t", "tab"), ("|", "'|'")])
def test_a_file_with_another_delimiter_is_reported_as_such(delimiter: str, said: str) -> None:
    report = check(to_csv(base_rows(), delimiter=delimiter))
    issue = only(report, "delimiter")
    assert issue.blocking and report.blocking and len(report.issues) == 1
    assert f"separated by {said}, not by commas" in issue.message


def test_a_missing_label_column_is_blocking_and_named() -> None:
    rows = [r[:-1] for r in base_rows()]
    report = check(to_csv(rows, HEADER[:-1]))
    issue = only(report, "schema")
    assert issue.blocking and issue.column == "outcome" and issue.rows == ()
    assert "header: column 'outcome' (the label) is missing" in report.to_text()


def test_every_missing_column_and_a_repeated_one_are_listed() -> None:
    header = ["patient_id", "age", "age", "sex", "outcome"]
    report = check(to_csv([r[:2] + r[1:2] + r[4:] for r in base_rows()], header))
    assert {(i.kind, i.column) for i in report.issues} == {
        ("schema", "age"), ("schema", "bmi"), ("schema", "sbp")}
    assert "column 'age' appears more than once" in report.to_text()


def test_rows_with_the_wrong_number_of_cells_are_blocking() -> None:
    rows = base_rows()
    rows[4] = rows[4][:3]
    rows[9] = [*rows[9], "extra"]
    issue = only(check(to_csv(rows)), "schema")
    assert issue.blocking and issue.rows == (5, 10) and issue.count == 2
    assert "the header's 6" in issue.message


def test_text_in_a_numeric_column_is_blocking_and_located() -> None:
    rows = base_rows()
    rows[2][2] = "twenty"
    rows[7][2] = "inf"
    issue = only(check(to_csv(rows)), "type")
    assert issue.blocking and issue.column == "bmi" and issue.rows == (3, 8)
    assert issue.message == ("column 'bmi': values that are not finite numbers in 2 rows "
                             "(rows 3, 8)")


def test_integer_and_binary_columns_are_enforced() -> None:
    rows = base_rows()
    rows[0][1] = "41.5"
    rows[1][5] = "2"
    report = check(to_csv(rows))
    found = {(i.column, i.rows) for i in report.issues if i.kind == "type"}
    assert found == {("age", (1,)), ("outcome", (2,))}
    assert report.blocking


def test_out_of_range_values_name_rows_and_range_but_not_values() -> None:
    rows = base_rows()
    rows[3][1] = "150"
    rows[5][1] = "-2"
    issue = only(check(to_csv(rows)), "out_of_range")
    assert not issue.blocking and issue.column == "age" and issue.count == 2
    assert issue.message == ("column 'age': values outside the allowed range [0, 120] in 2 rows "
                             "(rows 4, 6)")


def test_a_category_outside_the_dictionary_is_out_of_range() -> None:
    rows = base_rows()
    rows[0][4] = "X"
    issue = only(check(to_csv(rows)), "out_of_range")
    assert issue.column == "sex" and issue.rows == (1,)
    assert "not among the allowed categories (F, M)" in issue.message


def test_empty_cells_and_na_tokens_are_missing_values() -> None:
    rows = base_rows()
    rows[0][2], rows[1][2], rows[2][3], rows[3][0] = "", "NA", "nan", ""
    report = check(to_csv(rows))
    found = {(i.column, i.rows) for i in report.issues if i.kind == "missing"}
    assert found == {("bmi", (1, 2)), ("sbp", (3,)), ("patient_id", (4,))}
    assert not report.blocking and report.issue_kinds == {"missing"}
    assert report.policy_fields == {"missing"}


def test_ten_percent_duplicate_rows_are_reported_with_their_rows() -> None:
    rows = base_rows()
    content = to_csv(rows + rows[:4])
    issue = only(check(content), "duplicate_row")
    assert issue.count == 4 and issue.rows == (41, 42, 43, 44) and issue.column is None
    assert "exact repeats of an earlier row in 4 rows" in issue.message


def test_a_patient_id_on_rows_that_disagree_is_a_duplicate_id() -> None:
    rows = base_rows()
    rows[10][0] = rows[2][0]
    issue = only(check(to_csv(rows)), "duplicate_id")
    assert issue.column == "patient_id" and issue.rows == (11,) and issue.count == 1


def test_outliers_lie_beyond_three_interquartile_ranges() -> None:
    rows = base_rows()
    rows[6][2] = "60"  # in range (10..80) but far from the other BMIs
    rows[8][3] = "400"  # sbp has no dictionary entry: still checked
    rows[9][2] = "85"  # out of range: reported as that, not as an outlier
    report = check(to_csv(rows))
    found = {(i.column, i.rows) for i in report.issues if i.kind == "outlier"}
    assert found == {("bmi", (7,)), ("sbp", (9,))}
    assert only(report, "out_of_range").rows == (10,)
    assert "outlier" in report.issue_kinds and not report.blocking


def test_only_far_out_values_count_as_outliers_not_mild_ones() -> None:
    rows = base_rows()
    sbp = sorted(float(r[3]) for r in rows)
    q1, q3 = np.percentile(sbp, [25, 75])
    rows[0][3] = f"{q3 + 2.0 * (q3 - q1):g}"  # beyond Tukey's 1.5 IQR, within 3
    rows[1][3] = f"{q1 - 3.5 * (q3 - q1):g}"
    final = np.array([float(r[3]) for r in rows])
    f1, f3 = np.percentile(final, [25, 75])
    assert f3 + 1.5 * (f3 - f1) < float(rows[0][3]) < f3 + 3 * (f3 - f1)
    issue = only(check(to_csv(rows)), "outlier")
    assert issue.column == "sbp" and issue.rows == (2,)


def test_a_rare_label_is_reported_without_blocking() -> None:
    rows = base_rows()
    for row in rows:
        row[5] = "0"
    rows[0][5] = rows[1][5] = "1"
    report = check(to_csv(rows))
    issue = only(report, "label_balance")
    assert not issue.blocking and "label 1 is 5.0% of rows (2 of 40)" in issue.message
    assert report.issue_kinds == set() and not report.ok


def test_row_1_is_the_first_row_after_the_header_and_blank_rows_count() -> None:
    text = to_csv(base_rows()).decode().splitlines()
    text.insert(3, "")
    rows = [*text[:6], "P999,41,x,120,F,1", *text[6:]]  # line 7 of the file
    issue = only(check(("\n".join(rows) + "\n").encode()), "type")
    assert issue.rows == (6,)
    assert "(row 6)" in issue.message


def test_at_most_twenty_rows_are_listed_and_the_rest_counted() -> None:
    rows = base_rows(60)
    for row in rows[:30]:
        row[1] = "200"
    issue = only(check(to_csv(rows)), "out_of_range")
    assert issue.count == 30 and len(issue.rows) == 20 and issue.rows[0] == 1
    assert "(rows 1, 2," in issue.message and "and 10 more" in issue.message


def test_reports_never_show_cell_values_or_patient_ids() -> None:
    rows = base_rows()
    rows[0][2] = SECRET_VALUE  # out of range
    rows[1][3] = SECRET_VALUE  # outlier
    rows[2][0] = SECRET_ID
    rows[3][0] = SECRET_ID  # duplicate id with other values
    rows[4][4] = SECRET_ID  # unknown category
    rows[5][1] = SECRET_VALUE + "x"  # not a number: blocking
    report = check(to_csv(rows))
    assert {"out_of_range", "outlier", "duplicate_id", "type"} <= {i.kind for i in report.issues}
    for text in (report.to_text(), json.dumps(report.to_json()), json.dumps(report.summary())):
        assert SECRET_VALUE not in text and SECRET_ID not in text and "987654" not in text


def test_without_a_dictionary_numbers_missing_duplicates_and_labels_are_checked() -> None:
    plain = parse_plan(PLAN_TOML.split("[dataset.columns.age]")[0]
                       + PLAN_TOML.split('categories = ["F", "M"]')[1])
    assert plain.dataset.columns is None
    rows = base_rows()
    rows[0][1] = "500"  # no range without a dictionary
    rows[1][2] = "abc"
    rows[2][3] = ""
    rows[3][5] = "3"
    rows[4][4] = "anything"  # free text without categories
    report = check(to_csv(rows + rows[10:12]), plain)
    assert {(i.kind, i.column) for i in report.issues} == {
        ("type", "bmi"), ("missing", "sbp"), ("type", "outcome"), ("duplicate_row", None),
        ("outlier", "age")}


def test_a_parquet_file_gives_the_same_report_as_the_csv() -> None:
    rows = base_rows()
    rows[3][1] = "150"
    rows[5][2] = ""
    csv_report = check(to_csv(rows + rows[:2]))
    parquet_report = check(to_parquet(rows + rows[:2]), name="cohort.parquet")
    assert parquet_report.source_format == "parquet"
    assert [i.to_json() for i in parquet_report.issues] == [i.to_json() for i in csv_report.issues]
    assert parquet_report.label_counts == csv_report.label_counts


def test_a_damaged_parquet_file_is_blocking_not_a_crash() -> None:
    content = to_parquet(base_rows())
    report = check(content[: len(content) // 2], name="cohort.parquet")
    issue = only(report, "encoding")
    assert issue.blocking and "not a readable Parquet file" in issue.message
    assert only(check(b"not parquet at all", name="x.parquet"), "encoding").blocking


def test_an_empty_file_or_a_header_alone_is_blocking() -> None:
    assert "empty" in only(check(b""), "schema").message
    assert "no data rows" in only(check(to_csv([])), "schema").message


def test_the_summary_is_json_with_counts_only() -> None:
    rows = base_rows()
    rows[3][1] = "150"
    summary = check(to_csv(rows + rows[:1])).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["issues"] == {"out_of_range": 1, "duplicate_row": 1}
    assert summary["rows"] == 41 and summary["blocking"] is False


def test_policy_defaults_round_trip_and_refuse_unknown_choices() -> None:
    default = Policy()
    assert default.to_json() == {name: choices[0] for name, choices in POLICY_CHOICES.items()}
    chosen = Policy(missing="impute_mean", out_of_range="clip", outliers="drop",
                    duplicates="drop")
    assert Policy.from_json(chosen.to_json()) == chosen
    assert Policy.from_json({}) == default
    with pytest.raises(TesseraError) as caught:
        Policy(missing="guess")  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "policy.missing: must be one of refuse, drop, impute_median" in caught.value.message
    with pytest.raises(TesseraError, match="unknown field"):
        Policy.from_json({"missing": "drop", "labels": "drop"})
    with pytest.raises(TesseraError, match=r"policy\.outliers: must be a string"):
        Policy.from_json({"outliers": 3})
