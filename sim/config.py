"""Typed configuration: the predictor's settings, one MESS+ run, and the sweep grid."""

from __future__ import annotations

from dataclasses import dataclass

from messplus.sim import presets

COST_ESTIMATES = ("mean", "last", "oracle")  # oracle: the request's own realised cost
RESULTS_KEY = b"messplus_results"  # Parquet metadata of runs/steps/predictions: config, models, version
RESULTS_VERSION = 3  # 3: runs gained preset, input_dropout, clip_norm, predictor_rank_ok, predictor_dead
# Every method, with what it knows and when: `sim sweep --help` and README print these.
METHOD_HELP = {
    "messplus": "MESS+: online predictor trained on its own explorations; knows nothing in advance",
    "single": "each zoo model alone (single:<model>)",
    "educated": "the paper's educated guessing (Appendix B heuristic): a random model per request; knows every "
    "model's accuracy on the whole benchmark in advance",
    "routellm": "RouteLLM-style weak/strong router: logistic classifier and threshold fitted on the calibration split",
    "routellm-paper": "the same classifier with the threshold tuned as in the paper, on the scored stream itself "
    "(first of 0.9..0.1 that meets alpha): knows the stream's outcomes",
    "routerdc": "RouterDC-style: per-model logistic classifiers on the calibration split, the likeliest model wins",
    "oracle": "per request the cheapest model that satisfies it: knows every outcome",
    "mix": "bound: the best fixed random mix of models, knowing each model's mean accuracy and cost on the stream",
    "opt": "bound: E_OPT, the offline optimum of the paper's problem on the stream (exact LP relaxation)",
}
METHODS = tuple(METHOD_HELP)
BOUNDS = ("mix", "opt")  # not policies: tables and figures show them as references


@dataclass(frozen=True)
class PredictorConfig:
    """Online head: Linear(h,h) -> LayerNorm -> ReLU -> Dropout -> Linear(h,M) -> sigmoid, SGD on BCE."""

    lr: float
    momentum: float
    epochs: int = 3  # SGD steps on each explored request
    weight_decay: float = 0.01
    dropout: float = 0.1  # on the hidden layer (paper's architecture)
    input_dropout: float = 0.1  # on the pooled embedding (paper Appendix B and reference code)
    clip_norm: float = 1.0  # total gradient-norm clipping before each step (reference code); 0: off


@dataclass(frozen=True)
class RunConfig:
    """One MESS+ run; everything random derives from `seed`."""

    alpha: float  # SLA: required mean satisfaction
    V: float  # cost weight in the drift-plus-penalty objective
    c: float  # exploration scale, p_t = min(1, c / t**k)
    k: float = 0.25  # exploration decay (paper code and appendix: 1/4; main text: 1/2)
    feedback: float = 1.0  # fraction of requests whose satisfaction reaches the queue
    cost_estimate: str = "mean"  # cost believed at decision time: mean | last | oracle
    seed: int = 0


@dataclass(frozen=True)
class SweepConfig:
    """The grid: every list is one axis; runs are their Cartesian product per bench."""

    benches: tuple[str, ...] = ()  # (): every bench in the trace
    alphas: tuple[float | str, ...] = ("mid",)  # "mid": halfway between the cheapest and the best model's accuracy
    Vs: tuple[float, ...] = (1e-3,)
    cs: tuple[float, ...] = (0.1,)
    ks: tuple[float, ...] = (0.25,)
    feedbacks: tuple[float, ...] = (1.0,)
    cost_estimates: tuple[str, ...] = ("mean",)
    seeds: tuple[int, ...] = (42, 43, 44)
    methods: tuple[str, ...] = METHODS
    cost: str = "energy_j"
    calib_frac: float = 0.2  # leading share of each seed's order held out to fit baselines; never scored
    preset: str = "auto"  # predictor settings table (sim.presets): auto picks it from the encoder
    epochs: int | None = None  # None: the preset's (likewise for every predictor field below)
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float = 0.01
    dropout: float = 0.1
    input_dropout: float | None = None
    clip_norm: float | None = None
    encoder: str = "auto"  # auto: the trace's features, else minilm; or features, minilm, modernbert, an HF id/path
    pooling: str | None = None  # cls (first token) or mean; None: the preset's
    max_length: int | None = None  # None: the bench's (sim.presets.MAX_LENGTH)
    cache_dir: str | None = None  # None: the user's cache directory
    device: str = "cpu"
    dtype: str = "float32"
    steps_every: int = 1  # keep every n-th step in the steps table (the last step always)

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
        )
