"""Typed configuration: the predictor's settings, one MESS+ run, and the sweep grid."""

from __future__ import annotations

from dataclasses import dataclass

COST_ESTIMATES = ("true", "mean", "last")
RESULTS_KEY = b"messplus_results"  # Parquet metadata of runs/steps/predictions: config, models, version
RESULTS_VERSION = 2  # 2: runs gained predictor_auc_z
METHODS = ("messplus", "single", "educated", "routellm", "routerdc", "oracle", "opt")


@dataclass(frozen=True)
class Preset:
    lr: float
    momentum: float
    max_length: int


# The MESS+ paper's per-benchmark predictor settings (learning rate, momentum, encoder max length).
PRESETS: dict[str, Preset] = {
    "arc_challenge": Preset(0.0606, 0.90, 256),
    "arc_easy": Preset(0.0826, 0.90, 256),
    "boolq": Preset(0.0767, 0.95, 128),
    "logiqa": Preset(0.0272, 0.90, 256),
    "piqa": Preset(0.0367, 0.90, 64),
    "sciq": Preset(0.0596, 0.95, 64),
    "social_iqa": Preset(0.0542, 0.95, 64),
    "winogrande": Preset(0.0660, 0.90, 64),
}
DEFAULT_PRESET = Preset(0.05, 0.90, 128)  # benches the paper did not tune


def preset(bench: str) -> Preset:
    return PRESETS.get(bench.replace("-", "_"), DEFAULT_PRESET)


@dataclass(frozen=True)
class PredictorConfig:
    """Online head: Linear(h,h) -> LayerNorm -> ReLU -> Dropout -> Linear(h,M) -> sigmoid, SGD on BCE."""

    lr: float
    momentum: float
    weight_decay: float = 0.01
    dropout: float = 0.1
    epochs: int = 3  # SGD passes over each explored request


@dataclass(frozen=True)
class RunConfig:
    """One MESS+ run; everything random derives from `seed`."""

    alpha: float  # SLA: required mean satisfaction
    V: float  # cost weight in the drift-plus-penalty objective
    c: float  # exploration scale, p_t = min(1, c / t**k)
    k: float = 0.25  # exploration decay (paper code and appendix: 1/4; main text: 1/2)
    feedback: float = 1.0  # fraction of requests whose satisfaction reaches the queue
    cost_estimate: str = "true"  # cost known at decision time: true | mean | last
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
    cost_estimates: tuple[str, ...] = ("true",)
    seeds: tuple[int, ...] = (42, 43, 44)
    methods: tuple[str, ...] = METHODS
    cost: str = "energy_j"
    calib_frac: float = 0.2  # leading share of each seed's order held out to fit baselines; never scored
    epochs: int = 3
    lr: float | None = None  # None: the bench preset
    momentum: float | None = None
    weight_decay: float = 0.01
    dropout: float = 0.1
    encoder: str = "auto"  # auto: the trace's features, else minilm; or features, minilm, modernbert, an HF id/path
    pooling: str = "cls"  # first token's last hidden state (paper) or mean over tokens
    max_length: int | None = None  # None: the bench preset
    cache_dir: str | None = None  # None: the user's cache directory
    device: str = "cpu"
    dtype: str = "float32"
    steps_every: int = 1  # keep every n-th step in the steps table (the last step always)

    def predictor(self, bench: str) -> PredictorConfig:
        p = preset(bench)
        return PredictorConfig(
            lr=self.lr if self.lr is not None else p.lr,
            momentum=self.momentum if self.momentum is not None else p.momentum,
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            epochs=self.epochs,
        )
