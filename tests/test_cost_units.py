"""V with a unit, and without: `--v-unit largest` is a rescaling of V, and the sweep warns when V is off scale."""

import numpy as np
import polars as pl
import pytest

from messplus.sim.bench import load
from messplus.sim.config import SweepConfig
from messplus.sim.metrics import z_critical
from messplus.sim.sweep import run_sweep
from messplus.traces.io import load_benches

BASE = dict(benches=("piqa",), seeds=(5,), cs=(1.0,), methods=("messplus",))


def test_unit_free_V_is_V_over_the_largest_models_mean_cost(small_trace):
    b = load(SweepConfig(**BASE), load_benches(small_trace, ["piqa"])["piqa"], "piqa")
    unit = b.E[:, -1].mean()
    free = run_sweep(SweepConfig(**BASE, Vs=(0.5,), v_unit="largest"), small_trace)
    raw = run_sweep(SweepConfig(**BASE, Vs=(0.5 / unit,)), small_trace)
    np.testing.assert_array_equal(free.steps["chosen"].to_numpy(), raw.steps["chosen"].to_numpy())
    assert free.runs["v_unit"][0] == "largest" and free.runs["V"][0] == 0.5  # recorded as given
    other = run_sweep(SweepConfig(**BASE, Vs=(0.5,)), small_trace)  # the same number in joules is another V
    assert not np.array_equal(free.steps["chosen"].to_numpy(), other.steps["chosen"].to_numpy())


@pytest.mark.parametrize("V, says", [(1e-7, "negligible"), (10.0, "dominates")])
def test_a_V_off_the_cost_scale_is_a_warning(small_trace, V, says):
    warnings = run_sweep(SweepConfig(**BASE, Vs=(V,)), small_trace).warnings
    assert any(says in w and "bench piqa" in w for w in warnings), warnings


def test_quality_threshold_is_corrected_for_the_number_of_models():
    assert z_critical(1) == pytest.approx(1.96, abs=0.01)
    assert z_critical(11) == pytest.approx(2.84, abs=0.01)  # 11 models at z = 2: one passes by chance too often
    assert pl.Series([z_critical(m) for m in range(1, 6)]).is_sorted()


def test_a_shared_prompt_prefix_is_stripped_before_embedding():
    from messplus.sim.inputs import distinct_warnings, distinctive

    shots = "Question: 2+2? Answer: 4\n" * 20  # 500 characters of few-shot examples every prompt shares
    texts = [shots + f"Question: {q}? Answer:" for q in ("why is the sky blue", "what is 7x6", "who wrote Hamlet")]
    stripped, cut = distinctive(texts)
    assert cut == len(shots + "Question: ") and stripped[1] == "what is 7x6? Answer:"  # cut at a space
    assert distinctive(["Question: a", "Question: b"]) == (["Question: a", "Question: b"], 0)  # short: kept
    assert distinct_warnings("arc", np.ones((10, 4)))[0].startswith("bench arc: only 1 distinct")
    assert distinct_warnings("arc", np.eye(10)) == []


def test_the_cost_kinds_are_one_table():
    """--cost's choices, the units of tables and what a trace offers all come from traces.schema.COST_KINDS."""
    import typing

    from messplus.sim.config import Cost
    from messplus.sim.results import UNITS
    from messplus.traces.schema import COST_KINDS

    assert typing.get_args(Cost) == tuple(COST_KINDS) == tuple(UNITS)
