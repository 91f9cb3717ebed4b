"""`poolbench demo`: the article's example through every operator, and --input checking."""

import pytest
from helpers import cli

from poolbench.demo import ARTICLE_EXAMPLE, apply_operators, format_value, parse_matrix
from poolbench.errors import UsageError
from poolbench.pools import pool_names


def test_article_example_gives_the_articles_max_and_average():
    results = {r.name: r for r in apply_operators([list(map(float, row)) for row in ARTICLE_EXAMPLE])}
    assert set(results) == set(pool_names())
    assert results["max"].output == [[1, 5], [5, 1]]
    assert results["avg"].output == [[0.25, 3], [3, 0.25]]
    assert results["global"].output == [[sum(map(sum, ARTICLE_EXAMPLE)) / 16]]
    for name in ("mixed", "gated"):  # halfway between max and avg at initialization
        assert results[name].output == [[0.625, 4], [4, 0.625]]
        assert "at init" in results[name].note
    assert "at init" in results["strided"].note and "at init" in results["attention"].note
    assert results["max"].note == "" and results["avg"].note == ""


def test_parse_matrix_reads_rows_and_values():
    assert parse_matrix("1,2;3,4") == [[1, 2], [3, 4]]
    assert parse_matrix(" 1 2 ; -3.5,4e1 ;") == [[1, 2], [-3.5, 40]]


@pytest.mark.parametrize("text, message", [
    ("1,2;3", "different lengths"),
    ("1,x;3,4", "'x' is not a number"),
    ("", "empty row"),
    ("1;;2", "empty row"),
    ("5", "1x1"),
    ("1,2,3", "1x3"),
    ("1,inf;2,3", "not a finite number"),
    (";".join([",".join(["1"] * 17)] * 17), "17x17"),
])
def test_bad_input_is_a_usage_error(text, message):
    with pytest.raises(UsageError, match=message):
        parse_matrix(text)


def test_format_value_trims_zeros():
    values = (0.25, 3.0, 0.625, -1.5, -0.0001, 4.3333)
    assert [format_value(v) for v in values] == ["0.25", "3", "0.625", "-1.5", "0", "4.333"]


def test_cli_demo_prints_every_operator_and_rejects_bad_input():
    done = cli("demo")
    assert done.exit_code == 0, done.output
    for name in pool_names():
        assert name in done.output
    assert "0.25" in done.output and "learned: at init" in done.output
    custom = cli("demo", "--input", "1,2;3,4")
    assert custom.exit_code == 0 and "2.5" in custom.output  # the average of 1..4
    bad = cli("demo", "--input", "1,2;3")
    assert bad.exit_code == 2
    assert "different lengths" in bad.output
