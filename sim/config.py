"""Typed configuration, declared once: the sweep grid (every field carries its default, help and valid range; the
`sim sweep` options and their validation derive from it), one MESS+ run, and the predictor's resolved settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from messplus.common.options import opt
from messplus.sim import presets

CostEstimate = Literal["mean", "last", "oracle"]  # oracle: the request's own realised cost
Cost = Literal["energy_j", "latency_s", "cost_usd", "tokens"]  # traces.schema.COST_KINDS (a test keeps them one)
ExploreServe = Literal["best", "largest"]  # whose answer an exploration returns (sim.engine.explore_answers)
Learn = Literal["explored", "feedback"]  # what the predictor trains on (sim.reference.train_on)
MAX_V, MAX_C, MAX_K = 1e12, 1e9, 10.0  # upper bounds of the grid's numbers, each said why in its help
MAX_LENGTH = 8192  # tokens: beyond every encoder's position embeddings this project knows (ModernBERT: 8192)
HeadKind = Literal["residual", "paper"]  # the predictor's output (sim.head.Head)
Alpha = float | Literal["mid", "paper"]  # an SLA target, or a rule giving one per bench (sim.bench.resolve_alphas)
ALPHA_HELP = (
    "SLA target: a share of requests satisfied (0.8 = 80%); mid = halfway between the cheapest and the best "
    "model's accuracy on the bench; paper = the paper's per-bench alpha (Table 2: ARC-C 0.50, ARC-E 0.75, "
    "BoolQ 0.80, LogiQA 0.40, PIQA 0.78, SciQ 0.96, Social IQa 0.44, WinoGrande 0.70)."
)


def _method_help() -> str:
    from messplus.sim.routers import registry

    return "Methods: all (every one below); " + "; ".join(f"{m.name}: {m.help}" for m in registry().values()) + "."


def _method_names() -> tuple[str, ...]:
    from messplus.sim.routers import registry

    return ("all", *registry())


@dataclass(frozen=True)
class PredictorConfig:
    """Online head: Linear(h,h) -> LayerNorm -> ReLU -> Dropout -> Linear(h,M) -> sigmoid, SGD on BCE. Resolved
    per bench from a preset and the sweep's overrides (SweepConfig.predictor); every field is documented there."""

    lr: float
    momentum: float
    epochs: int
    weight_decay: float
    dropout: float
    input_dropout: float
    clip_norm: float  # 0: off
    head: HeadKind = "residual"

    @property
    def residual(self) -> bool:
        """Whether the head adds its output to the running base rate's log-odds (sim.base_rate)."""
        return self.head == "residual"


@dataclass(frozen=True)
class RunConfig:
    """One MESS+ run of the per-request reference; everything random comes from `seed` (its sim.draws.Draws)."""

    alpha: float  # SLA: required mean satisfaction
    V: float  # cost weight in the drift-plus-penalty objective
    c: float  # exploration scale, p_t = min(1, c / t**k)
    k: float = 0.25
    feedback: float = 1.0
    cost_estimate: CostEstimate = "mean"
    seed: int = 0
    explore_serve: ExploreServe = "best"
    learn: Learn = "explored"
    latency_sla: float | None = None  # a second SLA on mean latency, kept by a second queue


@dataclass(frozen=True)
class SweepConfig:
    """The grid: every list is one axis; runs are their Cartesian product per bench."""

    # fmt: off
    benches: tuple[str, ...] = opt((), "Benches to replay (default: every bench in the trace).", flag="--bench",
                                   empty_ok=True, unique=True)
    stream: str = opt("each", "Request streams: each (every bench its own stream, as the paper), mixed (the "
                      "chosen benches interleaved at random per seed, under one SLA and one predictor) or "
                      "drift:A,B,C (those benches in blocks, in that order, each shuffled; the calibration split is "
                      "the start of the first block).")
    alphas: tuple[Alpha | tuple[str, Alpha], ...] = opt(
        ("mid",), ALPHA_HELP + " Several: one axis of the grid.", flag="--alpha", lo=0, hi=1, lo_open=True,
        unique=True, keyed=True)
    Vs: tuple[float, ...] = opt((1e-3,), "Cost weights V (in the cost column's unit: J, USD, s or tokens); at most "
                                "1e12, past which the cost term decides every request alone.", flag="--V", lo=0,
                                hi=MAX_V, unique=True)
    cs: tuple[float, ...] = opt((0.1,), "Exploration scales c: explore with p_t = min(1, c / t^k); at most 1e9 (c >= "
                                "T^k explores every request of a stream of T).", flag="--c", lo=0, lo_open=True,
                                hi=MAX_C, unique=True)
    v_unit: Literal["raw", "largest"] = opt(
        "raw", "What V multiplies: raw (the cost column as it is, so V carries its unit: 1e-3 per joule is not "
        "1e-3 per dollar) or largest (each cost divided by the largest model's mean cost on the bench, a per-model "
        "price profile: V is then unit-free, and V = 1 weighs the largest model's cost like one unit of queue).")
    ks: tuple[float, ...] = opt((0.25,), "Exploration decays k (paper code and appendix: 0.25; main text: 0.5); at "
                                "most 10, past which c / t^k is nil after the first requests.", flag="--k", lo=0,
                                hi=MAX_K, unique=True)
    feedbacks: tuple[float, ...] = opt((1.0,), "Feedback rates: share of requests whose outcome reaches the queue.",
                                       flag="--feedback", lo=0, hi=1, unique=True)
    learns: tuple[Learn, ...] = opt(
        ("explored",), "What the predictor learns from: explored (explored requests only, every model's label: the "
        "paper) or feedback (also every exploited request whose outcome reaches the router, see --feedback, on the "
        "chosen model's label alone: a masked BCE). feedback ties the predictor to each run's own choices, so each "
        "such run trains a predictor of its own: slower.", flag="--learn", unique=True)
    cost_estimates: tuple[CostEstimate, ...] = opt(
        ("mean",), "Cost MESS+ believes at decision time: mean (running mean of the costs seen on explorations; "
        "what a deployed router knows), last (the last explored request's, as the reference simulator), oracle "
        "(the request's own realised cost: knows the future, an upper bound on savings).", flag="--cost-estimate", unique=True)
    explore_serve: ExploreServe = opt(
        "best", "Whose answer an exploration returns (every model is queried): best (the most accurate model on "
        "the explored requests so far, ties and the start to the largest) or largest (the paper's; in a zoo ordered "
        "by dollar price the dearest model is not always the best).")
    seeds: tuple[int, ...] = opt((42, 43, 44), "Seeds; each draws its own request order and randomness (whole "
                                 "numbers in [0, 2^63)).", lo=0, hi=2**63 - 1,
                                 unique=True)
    methods: tuple[str, ...] = opt(("all",), _method_help, choices=_method_names, unique=True)
    cost: Cost = opt("energy_j", "Cost minimised: energy_j (J), latency_s (s), cost_usd (USD) or tokens (prompt + "
                     "completion tokens).")
    calib_frac: float = opt(0.2, "Leading share of each seed's order held out to fit the baselines; never scored.",
                            lo=0, hi=0.9)
    head: HeadKind = opt(
        "residual", "Predictor output: residual (each model's running base rate in log-odds, the Laplace-smoothed "
        "mean of the labels it learned from, plus the MLP's output, whose last layer starts at zero: it starts as a "
        "counter and learns only what the inputs add) or paper (the paper's head: the MLP alone, from torch's "
        "default init; with few explorations it stays near 0.5 and compresses the predicted gaps between models).")
    preset: Literal["auto", "paper", "minilm", "features"] = opt(
        "auto", "Predictor settings table: auto (from the encoder), paper (Table 4 + reference code, tuned for "
        "ModernBERT), minilm, features. The options below override single fields.")
    epochs: int | None = opt(None, "SGD steps per explored request (default: the preset's); at most 100, each a "
                             "step on the same request.", lo=1, hi=100)
    lr: float | None = opt(None, "Predictor learning rate (default: the preset's); at most 10: at batch size 1 a "
                           "larger step diverges on any input.", lo=0, lo_open=True, hi=10)
    momentum: float | None = opt(None, "SGD momentum (default: the preset's).", lo=0, hi=1, hi_open=True)
    weight_decay: float = opt(0.01, "SGD weight decay; at most 1 (lr x 1 takes that share of every weight each "
                              "step).", lo=0, hi=1)
    dropout: float = opt(0.1, "Dropout on the predictor's hidden layer while training.", lo=0, hi=1, hi_open=True)
    input_dropout: float | None = opt(None, "Dropout on the encoder embedding while training (default: the "
                                      "preset's).", lo=0, hi=1, hi_open=True)
    clip_norm: float | None = opt(None, "Gradient-norm clipping before each SGD step, 0 = off (default: the "
                                  "preset's); at most 1e6, which no gradient reaches (use 0 for off).", lo=0, hi=1e6)
    encoder: str = opt("auto", "Predictor input: auto (the trace's features, else minilm), features, minilm, "
                       "modernbert, or a Hugging Face id or local path.")
    pooling: Literal["cls", "mean"] | None = opt(None, "Encoder pooling: cls (first token, the paper's) or mean "
                                                 "(default: the preset's).")
    max_length: int | None = opt(None, "Encoder max tokens (default: the bench's); at most the encoder's own limit.",
                                 lo=1, hi=MAX_LENGTH)
    cache_dir: str | None = opt(None, "Embedding cache folder (default: $MESSPLUS_CACHE if set, else ~/.cache/messplus/embeddings).")
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "Where the predictor trains: auto picks cuda when torch "
                                                 "sees a GPU.")
    dtype: Literal["float32", "float64"] = opt("float32", "Predictor arithmetic.")
    steps_every: int = opt(1, "Keep every n-th step in steps.parquet (and the last).", lo=1, hi=2**63 - 1)
    latency_sla: float | None = opt(None, "A second SLA: mean latency at most this many seconds a request (from "
                                    "the trace's latency_s). MESS+ and its online rivals keep a second virtual "
                                    "queue for it (drift-plus-penalty with two queues); every method's mean "
                                    "latency is reported against it. At most 1e6 s.", lo=0, lo_open=True, hi=1e6)
    # fmt: on

    def family(self, encoder: str) -> str:
        """The preset table for a resolved encoder name (features, minilm, modernbert, an HF id/path)."""
        return presets.family(encoder) if self.preset == "auto" else self.preset

    def predictor(self, bench: str, family: str) -> PredictorConfig:
        p = presets.preset(family, bench)
        pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
        return PredictorConfig(
            lr=pick(self.lr, p.lr),
            momentum=pick(self.momentum, p.momentum),
            epochs=pick(self.epochs, p.epochs),
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            input_dropout=pick(self.input_dropout, p.input_dropout),
            clip_norm=pick(self.clip_norm, p.clip_norm),
            head=self.head,
        )
