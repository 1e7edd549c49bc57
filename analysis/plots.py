"""The paper's figures for any sweep, as PNG and SVG. Colours are Okabe-Ito; every series also differs by marker
or line style, so the figures survive greyscale printing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from messplus.analysis.tables import labelled
from messplus.sim.metrics import auc, bce
from messplus.sim.results import Results
from messplus.sim.routers import MESSPLUS

COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "++", "--", "**", "||", "OO"]
plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9, "legend.fontsize": 8})


def save(fig, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if not fig.legends:  # a figure-level legend was placed against the final layout already
        fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", bbox_inches="tight")
    plt.close(fig)
    return out / f"{name}.png"


def spread(values: list, k: int = 4) -> list:
    """At most k values, evenly spread from the first to the last."""
    if len(values) <= k:
        return values
    return [values[i] for i in np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))]


def dynamics(res: Results, bench: str, out: Path) -> Path:
    """Figure 2: running satisfaction and cost per request over time, a column per V, a line per alpha."""
    runs = res.runs.filter(pl.col("method") == MESSPLUS, pl.col("bench") == bench)
    first = runs.select(pl.col("c").min(), pl.col("k").min(), pl.col("feedback").max()).collect().row(0)
    runs = runs.filter(pl.col("c") == first[0], pl.col("k") == first[1], pl.col("feedback") == first[2]).collect()
    all_Vs, all_alphas = sorted(runs["V"].unique()), sorted(runs["alpha"].unique())
    Vs, alphas = spread(all_Vs), spread(all_alphas)  # a readable grid: at most 4 x 4, evenly spread
    runs = runs.filter(pl.col("V").is_in(Vs), pl.col("alpha").is_in(alphas))
    steps = (
        res.steps.join(runs.lazy().select("run_id", "V", "alpha", "sla_first_ok"), on="run_id")
        .group_by(["V", "alpha", "t"])
        .agg(pl.col("running_satisfaction").mean(), pl.col("running_cost").mean())
        .sort("t")
        .collect()
    )
    unit, _ = res.unit(total=False)
    fig, axes = plt.subplots(2, len(Vs), figsize=(3.6 * len(Vs) + 0.6, 5.4), sharex=True, squeeze=False)
    for j, V in enumerate(Vs):
        for i, a in enumerate(alphas):
            s = steps.filter(pl.col("V") == V, pl.col("alpha") == a)
            style = dict(color=COLORS[i % 8], ls=STYLES[i % 4], lw=1.4)
            axes[0, j].plot(s["t"], 100 * s["running_satisfaction"], label=f"α = {a:.3f}", **style)
            axes[0, j].axhline(100 * a, color=COLORS[i % 8], lw=0.8, ls=(0, (1, 2)))
            axes[1, j].plot(s["t"], s["running_cost"], **style)
            ok = runs.filter(pl.col("V") == V, pl.col("alpha") == a)["sla_first_ok"].drop_nulls()
            if len(ok) == runs.filter(pl.col("V") == V, pl.col("alpha") == a).height:  # every seed settles above alpha
                t_ok = float(ok.mean())
                axes[0, j].plot([t_ok], [100 * a], marker=MARKERS[i], color=COLORS[i % 8], ms=7, mfc="white")
        settled = steps.filter(pl.col("V") == V, pl.col("t") >= max(2, steps["t"].max() // 20))
        if settled.height:  # the first few requests swing wildly; scale to the rest
            lo, hi = 100 * settled["running_satisfaction"].min(), 100 * settled["running_satisfaction"].max()
            lo, hi = min(lo, 100 * min(alphas)), max(hi, 100 * max(alphas))
            axes[0, j].set_ylim(lo - 0.1 * (hi - lo) - 0.5, hi + 0.1 * (hi - lo) + 0.5)
            axes[1, j].set_ylim(0, 1.1 * settled["running_cost"].max())
        thinned = " (4 of each shown)" if len(Vs) < len(all_Vs) or len(alphas) < len(all_alphas) else ""
        axes[0, j].set_title(f"{bench}: V = {V:g}{thinned if j == 0 else ''}")
        axes[1, j].set_xlabel("request index t")
    axes[0, 0].set_ylabel("running satisfaction (%)")
    axes[1, 0].set_ylabel(f"running cost per request ({unit})")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, title="SLA α (dotted line); ○ marks the request after which the SLA holds on every seed",
               loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(labels)), frameon=False)  # fmt: skip
    return save(fig, out, f"dynamics_{bench}")


def pareto(points: np.ndarray) -> np.ndarray:
    """[n, 2] (cost, satisfaction) -> the non-dominated points, by cost."""
    pts = points[np.argsort(points[:, 0])]
    keep, best = [], -np.inf
    for c, s in pts:
        if s > best:
            keep.append((c, s))
            best = s
    return np.array(keep)


def plane(res: Results, out: Path) -> Path:
    """Every method and configuration as a point (mean over seeds), each method's Pareto frontier, the oracle
    and the offline optimum E_OPT."""
    runs = (
        labelled(res.runs)
        .group_by(["bench", "method", "kind", "label", "alpha"])
        .agg(pl.col("cost_per_request").mean(), (100 * pl.col("satisfaction")).mean().alias("satisfaction"))
        .collect()
    )
    benches = sorted(runs["bench"].unique())
    references = sorted(set(runs.filter(pl.col("kind") == "bound")["method"]) - {"opt"})  # E_OPT: a line
    cols = min(4, len(benches))
    rows = -(-len(benches) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.7 * cols, 3.3 * rows + 0.5), squeeze=False)
    methods = sorted(runs.filter(pl.col("kind") == "policy")["method"].unique())
    per_model = {m.split(":", 1)[1]: m for m in methods if ":" in m}  # <method>:<model> runs, in zoo order
    singles = [per_model[m] for m in res.models if m in per_model]
    others = [m for m in methods if m not in singles]
    styles = {m: dict(color=COLORS[i % 8], marker=MARKERS[i % len(MARKERS)]) for i, m in enumerate(others)}
    greys = np.linspace(0.75, 0.15, max(len(singles), 1))
    styles |= {m: dict(color=str(greys[i]), marker="$" + str(i + 1) + "$") for i, m in enumerate(singles)}
    unit, _ = res.unit(total=False)
    for ax, bench in zip(axes.flat, benches, strict=False):
        b = runs.filter(pl.col("bench") == bench)
        for m in others + singles:
            pts = b.filter(pl.col("method") == m).select("cost_per_request", "satisfaction").unique().to_numpy()
            if len(pts) == 0:
                continue
            style = styles[m]
            ax.scatter(pts[:, 0], pts[:, 1], s=45 if m in singles else 24, label=m, zorder=3, **style)
            if len(pts) > 1:
                front = pareto(pts)
                ax.step(front[:, 0], front[:, 1], where="post", color=style["color"], lw=0.9, alpha=0.7)
        for i, m in enumerate(references):
            pts = b.filter(pl.col("method") == m).drop_nulls("cost_per_request")
            ax.scatter(pts["cost_per_request"], pts["satisfaction"], s=40, facecolors="none", edgecolors="k",
                       marker=MARKERS[-1 - i], label=f"{m} (bound)", zorder=2)  # fmt: skip
        opt = b.filter(pl.col("method") == "opt").drop_nulls("cost_per_request").sort("alpha")
        if opt.height:
            ax.plot(opt["cost_per_request"], 100 * opt["alpha"], "k--", lw=1, marker="_", ms=12, label="E_OPT (bound)")
        for a in b["alpha"].unique():
            ax.axhline(100 * a, color="grey", lw=0.7, ls=":")
        ax.set_title(bench)
        ax.set_xlabel(f"cost per request ({unit})")
        ax.set_ylabel("satisfaction (%)")
    for ax in list(axes.flat)[len(benches) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle("cost against satisfaction, mean over seeds (dotted: SLA; dash: offline optimum E_OPT)")
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", ncol=min(7, len(labels)), bbox_to_anchor=(0.5, 0.0), frameon=False)
    return save(fig, out, "plane")


def rolling_auc(shat: np.ndarray, y: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """AUC of the last `window` pre-update predictions, every `stride` requests: t [n], auc [n]."""
    ts = np.arange(window, len(y) + 1, stride)
    return ts, np.array([auc(shat[t - window : t], y[t - window : t]) for t in ts])


def learning(res: Results, bench: str, out: Path) -> Path:
    """Figure 3: the predictor's loss and AUC against request index for each c, with cumulative exploration cost."""
    pred = res.predictions.filter(pl.col("bench") == bench).sort("seed", "c", "k", "t").collect()
    cs = sorted(pred["c"].unique())
    S = pred["t"].max()
    window, stride = max(50, min(400, S // 4)), max(1, S // 100)
    unit, _ = res.unit(total=True)
    _, scale = res.unit(total=True)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, c in enumerate(cs):
        style = dict(color=COLORS[i % 8], ls=STYLES[i % 4], lw=1.3)
        curves, losses, spend = [], [], []
        for (_seed, _k), g in pred.filter(pl.col("c") == c).group_by(["seed", "k"], maintain_order=True):
            shat, y = np.stack(g["shat"].to_numpy()), np.stack(g["label"].to_numpy())
            loss = bce(shat, y)
            losses.append(np.convolve(loss, np.ones(window) / window, mode="valid"))
            per_model = [rolling_auc(shat[:, m], y[:, m], window, stride)[1] for m in range(y.shape[1])]
            curves.append(np.nanmean(per_model, axis=0))
            spend.append(np.cumsum(g["explore_cost"].to_numpy()) * scale)
        ts = np.arange(window, S + 1, stride)
        axes[0].plot(np.arange(window, S + 1), np.mean(losses, 0), label=f"c = {c:g}", **style)
        axes[1].plot(ts, np.nanmean(curves, 0), **style)
        axes[2].plot(np.arange(1, S + 1), np.mean(spend, 0), **style)
    axes[1].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel(f"BCE before update (mean of last {window})")
    axes[1].set_ylabel(f"AUC, mean over models (last {window})")
    axes[2].set_ylabel(f"cumulative exploration cost ({unit})")
    for ax in axes:
        ax.set_xlabel("request index t")
    axes[0].set_title(f"{bench}: predictor loss")
    axes[1].set_title("predictor AUC")
    axes[2].set_title("what exploring cost")
    axes[0].legend()
    return save(fig, out, f"learning_{bench}")


def calls(res: Results, out: Path) -> Path:
    """Share of requests answered by each model, stacked, per method and bench (mean over seeds and configs).
    Single-model baselines are left out: each answers everything with its own model."""
    M = len(res.models)
    runs = (
        res.runs.filter(pl.col("kind") == "policy", ~pl.col("method").str.contains(":"))
        .with_columns([pl.col("call_ratio").list.get(m).alias(f"m{m}") for m in range(M)])
        .group_by(["bench", "method"])
        .agg([pl.col(f"m{m}").mean() for m in range(M)])
        .sort("bench", "method")
        .collect()
    )
    benches = sorted(runs["bench"].unique())
    cols = min(4, len(benches))
    rows = -(-len(benches) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, bench in zip(axes.flat, benches, strict=False):
        b = runs.filter(pl.col("bench") == bench)
        x = np.arange(b.height)
        bottom = np.zeros(b.height)
        for k in range(M):
            share = 100 * b[f"m{k}"].to_numpy()
            ax.bar(x, share, 0.7, bottom=bottom, color=COLORS[k % 8], hatch=HATCHES[k % len(HATCHES)],
                   edgecolor="white", lw=0.3, label=res.models[k])  # fmt: skip
            bottom += share
        ax.set_xticks(x, b["method"].to_list(), rotation=35, ha="right")
        ax.set_title(bench)
        ax.grid(axis="x", visible=False)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of requests answered (%)")
    for ax in list(axes.flat)[len(benches) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, title="model (cheapest first); explorations count for the largest",
               loc="lower center", ncol=min(M, 6), bbox_to_anchor=(0.5, 1.0), frameon=False)  # fmt: skip
    return save(fig, out, "calls")
