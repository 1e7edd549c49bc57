import numpy as np
import polars as pl
import pytest

from messplus.common import UserError
from messplus.traces.dense import to_arrays
from messplus.traces.io import Trace, read_trace, write_trace
from messplus.traces.schema import validate
from messplus.traces.zoo import Zoo, load_zoo


def long_frame(n=3, models=("a", "b")) -> pl.DataFrame:
    rows = [
        {"bench": "b1", "doc_id": str(i), "text": f"q{i}", "model": m, "satisfied": (i + j) % 2, "energy_j": 1.0 + j}
        for i in range(n)
        for j, m in enumerate(models)
    ]
    return pl.DataFrame(rows)


def test_round_trip_keeps_zoo_order_and_provenance(tmp_path):
    trace = Trace(long_frame(), Zoo.from_names(["a", "b"]), provenance={"importer": "test"})
    path = write_trace(trace, tmp_path / "t.parquet")
    back = read_trace(path)
    assert back.zoo.names == ("a", "b")
    assert back.provenance == {"importer": "test", "source": str(path)}
    assert back.df["satisfied"].dtype == pl.Int8
    assert back.df["cost_usd"].null_count() == back.df.height  # absent costs become typed nulls


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop("satisfied"), "missing column 'satisfied'"),
        (
            lambda df: df.with_columns(pl.lit(0.5).alias("satisfied")),
            "column 'satisfied' row 0: value 0.5 is not 0 or 1",
        ),
        (lambda df: df.with_columns(pl.lit(float("nan")).alias("energy_j")), "column 'energy_j' row 0: NaN cost"),
        (
            lambda df: df.filter(~((pl.col("doc_id") == "1") & (pl.col("model") == "b"))),
            "doc_id 1: no row for model 'b'",
        ),
        (lambda df: pl.concat([df, df.head(1)]), "row 0: duplicated (bench, doc_id, model) = (b1, 0, a)"),
        (lambda df: df.with_columns(pl.lit("magic").alias("energy_source")), "'magic' is not one of"),
    ],
)
def test_validation_names_the_problem(mutate, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(mutate(long_frame()), "f.parquet", ("a", "b"))


def test_unknown_model_is_reported():
    with pytest.raises(UserError, match="unknown model 'b' \\(zoo: a\\)"):
        validate(long_frame(), "f.parquet", ("a",))


def test_dense_view_orders_requests_by_arrival_and_models_by_zoo(tmp_path):
    df = long_frame(4).sample(fraction=1.0, shuffle=True, seed=1)  # rows scrambled
    first_seen = df["doc_id"].unique(maintain_order=True).to_list()
    arrays = to_arrays(Trace(df, Zoo.from_names(["b", "a"])), "b1")
    assert arrays.shape == (4, 2)
    assert arrays.doc_ids.tolist() == first_seen
    ids = np.array([int(d) for d in first_seen])
    np.testing.assert_array_equal(arrays.satisfied[:, 0], (ids + 1) % 2)  # model b is column 0
    np.testing.assert_array_equal(arrays.cost("energy_j")[:, 1], 1.0)
    with pytest.raises(UserError, match="cost column 'cost_usd' is empty"):
        arrays.cost("cost_usd")


def test_zoo_file_rejects_unknown_fields(tmp_path):
    good = tmp_path / "zoo.toml"
    good.write_text('[[models]]\nname = "s"\nhf_id = "x/s"\n[[models]]\nname = "l"\ngpus = [0, 1]\n')
    zoo = load_zoo(good)
    assert zoo.names == ("s", "l") and zoo.models[1].gpus == (0, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: s\n    colour: red\n")
    with pytest.raises(UserError, match="unknown model field 'colour'"):
        load_zoo(bad)


def test_a_trace_never_casts_away_a_bad_satisfied_value():
    df = long_frame().with_columns(
        pl.when(pl.col("doc_id") == "2").then(0.5).otherwise(pl.col("satisfied")).alias("satisfied")
    )
    with pytest.raises(UserError, match=r"row 4: value 0\.5 is not 0 or 1"):
        Trace(df, Zoo.from_names(["a", "b"]), provenance={"source": "toy.csv"})
