"""The paper's figures for any sweep, as PNG and SVG. Colours are Okabe-Ito, then Paul Tol's (12 distinct in all);
every series also differs by marker, hatch or line style, so the figures survive greyscale printing. Every setting
a figure does not show as an axis or a series is named in its title."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from messplus.analysis.tables import labelled
from messplus.common import UserError
from messplus.sim.metrics import auc, bce
from messplus.sim.results import Results
from messplus.sim.routers import MESSPLUS

COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
          "#882255", "#44AA99", "#999933", "#AA4499"]  # fmt: skip
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


SHORT = 20  # a dynamics series with fewer steps than this is drawn with a marker at each step


def spread(values: list, k: int = 4) -> list:
    """At most k values, evenly spread from the first to the last."""
    if len(values) <= k:
        return values
    return [values[i] for i in np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))]


def dynamics(res: Results, bench: str, out: Path) -> Path:
    """Figure 2: running satisfaction, cost per request and the virtual queue over time, a column per V, a line per
    alpha."""
    every = res.runs.filter(pl.col("method") == MESSPLUS, pl.col("bench") == bench).collect()
    c, k, fb, est = every["c"].min(), every["k"].min(), every["feedback"].max(), every["cost_estimate"].min()
    learn = every["learn"].min()  # "explored" before "feedback": the paper's
    runs = every.filter(pl.col("c") == c, pl.col("k") == k, pl.col("feedback") == fb, pl.col("cost_estimate") == est,
                        pl.col("learn") == learn)  # fmt: skip
    more = every.select(pl.struct("c", "k", "feedback", "cost_estimate", "learn").n_unique()).item() > 1
    all_Vs, all_alphas = sorted(runs["V"].unique()), sorted(runs["alpha"].unique())
    Vs, alphas = spread(all_Vs), spread(all_alphas)  # a readable grid: at most 4 x 4, evenly spread
    runs = runs.filter(pl.col("V").is_in(Vs), pl.col("alpha").is_in(alphas))
    steps = (
        res.steps.join(runs.lazy().select("run_id", "V", "alpha", "sla_first_ok"), on="run_id")
        .group_by(["V", "alpha", "t"])
        .agg(
            pl.col("running_satisfaction").mean(),
            pl.col("running_cost").mean(),
            pl.col("q").mean(),
            pl.col("running_satisfaction").min().alias("sat_lo"),
            pl.col("running_satisfaction").max().alias("sat_hi"),
        )
        .sort("t")
        .collect()
    )
    if steps.is_empty():
        raise UserError(f"bench {bench}: steps.parquet holds no step of its MESS+ runs; the results are damaged: "
                        "rerun `sim sweep`")  # fmt: skip
    unit, _ = res.unit(total=False)
    few = steps["t"].n_unique() < SHORT  # a short stream, or steps thinned by --steps-every: mark every point
    fig, axes = plt.subplots(3, len(Vs), figsize=(3.6 * len(Vs) + 0.6, 7.6), sharex=True, sharey="row", squeeze=False)
    for j, V in enumerate(Vs):
        for i, a in enumerate(alphas):
            s = steps.filter(pl.col("V") == V, pl.col("alpha") == a)
            style = dict(color=COLORS[i % len(COLORS)], ls=STYLES[i % 4], lw=1.4)
            style |= {"marker": MARKERS[i % len(MARKERS)], "ms": 4} if few else {}
            axes[0, j].plot(s["t"], 100 * s["running_satisfaction"], label=f"α = {a:.3f}", **style)
            axes[0, j].fill_between(
                s["t"], 100 * s["sat_lo"], 100 * s["sat_hi"], color=style["color"], alpha=0.15, lw=0
            )
            axes[0, j].axhline(100 * a, color=COLORS[i % len(COLORS)], lw=0.8, ls=(0, (1, 2)))
            axes[1, j].plot(s["t"], s["running_cost"], **style)
            axes[2, j].plot(s["t"], s["q"], **style)
            ok = runs.filter(pl.col("V") == V, pl.col("alpha") == a)["sla_first_ok"].drop_nulls()
            if len(ok) == runs.filter(pl.col("V") == V, pl.col("alpha") == a).height:  # every seed settles above alpha
                t_ok = float(ok.mean())
                axes[0, j].plot([t_ok], [100 * a], marker=MARKERS[i], color=COLORS[i % len(COLORS)], ms=7, mfc="white")
        thinned = " (4 of each shown)" if len(Vs) < len(all_Vs) or len(alphas) < len(all_alphas) else ""
        axes[0, j].set_title(f"V = {V:g}{thinned if j == 0 else ''}")
        axes[2, j].set_xlabel("request index t")
    for ax in axes.flat:  # a drift stream's block boundaries
        for t in res.meta.get("boundaries", {}).get(bench, []):
            ax.axvline(t, color="k", lw=0.8, ls="--", alpha=0.6)
    t_max = steps["t"].max() or 0
    # the first requests swing wildly: a long stream's scale leaves them out, a short one shows all it has
    settled = steps.filter(pl.col("t") >= max(2, t_max // 20)) if t_max >= SHORT else steps
    if settled.height:  # one scale for every V panel (shared axes), fitted to the settled part
        lo = min(100 * settled["sat_lo"].min(), 100 * min(alphas))
        hi = max(100 * settled["sat_hi"].max(), 100 * max(alphas))
        axes[0, 0].set_ylim(lo - 0.1 * (hi - lo) - 0.5, hi + 0.1 * (hi - lo) + 0.5)
        top = settled["running_cost"].max()
        if top and top > 0:  # all-zero costs: matplotlib's own scale
            axes[1, 0].set_ylim(0, 1.1 * top)
    axes[0, 0].set_ylabel("running satisfaction (%)")
    axes[1, 0].set_ylabel(f"running cost per request ({unit})")
    axes[2, 0].set_ylabel("virtual queue Q (mean)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    shown = f"c = {c:g}, k = {k:g}, feedback = {fb:g}, cost estimate {est}, learning from {learn}"
    thin = res.meta.get("config", {}).get("steps_every", 1)
    shown += f"; one step in {thin} kept" if thin > 1 else ""
    fig.suptitle(f"{bench}: MESS+ over time, mean of {runs['seed'].n_unique()} seeds (band: min to max); {shown}"
                 + (" (other settings of the sweep not shown)" if more else ""))  # fmt: skip
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
    """Every method and configuration (MESS+ per setting that varies) as a point, mean over seeds; for each alpha
    its own fill and Pareto line; the bounds as hollow black markers and E_OPT as a dashed line. The cost axis is
    logarithmic when costs span more than a decade."""
    runs = (
        labelled(res.runs)
        .group_by(["bench", "method", "kind", "label", "alpha"])
        .agg(pl.col("cost_per_request").mean(), (100 * pl.col("satisfaction")).mean().alias("satisfaction"))
        .collect()
    )
    benches, alphas = sorted(runs["bench"].unique()), sorted(runs["alpha"].unique())
    references = sorted(set(runs.filter(pl.col("kind") == "bound")["method"]) - {"opt"})  # E_OPT: a line
    labels = series_order(runs.filter(pl.col("kind") == "policy"), res.models)
    styles = {m: dict(color=COLORS[i % len(COLORS)], marker=MARKERS[i % len(MARKERS)]) for i, m in enumerate(labels)}
    cols = min(4, len(benches))
    fig, axes = plt.subplots(-(-len(benches) // cols), cols, figsize=(3.9 * cols, 3.4 * -(-len(benches) // cols) + 0.6),
                             squeeze=False)  # fmt: skip
    for ax, bench in zip(axes.flat, benches, strict=False):
        plane_panel(ax, runs.filter(pl.col("bench") == bench), labels, styles, alphas, references)
        ax.set_title(bench)
        ax.set_xlabel(f"cost per request ({res.unit(total=False)[0]})")
        ax.set_ylabel("satisfaction (%)")
    for ax in list(axes.flat)[len(benches) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fills = "; ".join(f"α = {a:.3f}: {'filled' if i == 0 else 'hollow'}, {('solid', 'dashed', 'dotted', 'dash-dot')[i % 4]} front"
                      for i, a in enumerate(alphas[:4]))  # fmt: skip
    fig.suptitle(f"cost against satisfaction, mean over seeds ({fills}; dotted grey: SLA; black dash: E_OPT)")
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", ncol=min(5, len(names)), bbox_to_anchor=(0.5, 0.0), frameon=False)
    return save(fig, out, "plane")


def series_order(runs: pl.DataFrame, models: list[str]) -> list[str]:
    """Labels of the policies: adaptive ones first, then the per-model runs (<method>:<model>) in zoo order."""
    labels = sorted(runs["label"].unique())
    per_model = {m.split(":", 1)[1]: m for m in labels if ":" in m}
    return [m for m in labels if ":" not in m] + [per_model[m] for m in models if m in per_model]


def plane_panel(ax, b: pl.DataFrame, labels: list[str], styles: dict, alphas: list[float], references: list[str]):
    """One bench: each label's points and Pareto front per alpha, the bounds, E_OPT and the SLA lines."""
    for i, a in enumerate(alphas):
        at = b.filter(pl.col("alpha") == a)
        for m in labels:
            pts = at.filter(pl.col("label") == m).select("cost_per_request", "satisfaction").drop_nulls().to_numpy()
            if len(pts) == 0:
                continue
            st = styles[m]
            ax.scatter(pts[:, 0], pts[:, 1], s=26, marker=st["marker"], edgecolors=st["color"], zorder=3,
                       facecolors=st["color"] if i == 0 else "none", label=m if i == 0 else None)  # fmt: skip
            if len(pts) > 1:
                front = pareto(pts)
                ax.step(front[:, 0], front[:, 1], where="post", color=st["color"], lw=0.9, alpha=0.7, ls=STYLES[i % 4])
        ax.axhline(100 * a, color="grey", lw=0.7, ls=":")
    for j, m in enumerate(references):
        pts = b.filter(pl.col("method") == m).drop_nulls("cost_per_request")
        ax.scatter(pts["cost_per_request"], pts["satisfaction"], s=40, facecolors="none", edgecolors="k",
                   marker=MARKERS[-1 - j], label=f"{m} (bound)", zorder=2)  # fmt: skip
    opt = b.filter(pl.col("method") == "opt").drop_nulls("cost_per_request").sort("alpha")
    if opt.height:
        ax.plot(opt["cost_per_request"], 100 * opt["alpha"], "k--", lw=1, marker="_", ms=12, label="E_OPT (bound)")
    costs = b["cost_per_request"].drop_nulls().to_numpy()
    if len(costs) and costs.min() > 0 and costs.max() > 10 * costs.min():
        ax.set_xscale("log")


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """[S] mean of the last `window` values at each t, of all of them before t reaches the window (from t = 1)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(1, len(x) + 1)
    start = np.maximum(t - window, 0)
    return (c[t] - c[start]) / (t - start)


def rolling_auc(shat: np.ndarray, y: np.ndarray, window: int, ts: np.ndarray) -> np.ndarray:
    """[n] AUC of the last `window` pre-update predictions (all of them, early on) at each t in ts."""
    return np.array([auc(shat[max(0, t - window) : t], y[max(0, t - window) : t]) for t in ts])


def learning(res: Results, bench: str, out: Path) -> Path:
    """Figure 3: the predictor's loss and AUC against request index for each c, with cumulative exploration cost."""
    pred = res.predictions.filter(pl.col("bench") == bench).sort("seed", "c", "k", "t").collect()
    if pred.is_empty():
        raise UserError(f"bench {bench}: predictions.parquet holds none of its MESS+ predictions; the results are "
                        "damaged: rerun `sim sweep`")  # fmt: skip
    cs = sorted(pred["c"].unique())
    S = pred["t"].max()
    window, stride = max(50, min(400, S // 4)), max(1, S // 100)
    ts = np.unique(
        np.r_[np.arange(10, window, max(1, window // 20)), np.arange(window, S + 1, stride)]
    )  # from early on
    unit, _ = res.unit(total=True)
    _, scale = res.unit(total=True)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, c in enumerate(cs):
        style = dict(color=COLORS[i % len(COLORS)], ls=STYLES[i % 4], lw=1.3)
        curves, losses, spend = [], [], []
        for (_seed, _k), g in pred.filter(pl.col("c") == c).group_by(["seed", "k"], maintain_order=True):
            shat, y = np.stack(g["shat"].to_numpy()), np.stack(g["label"].to_numpy())
            loss = bce(shat, y)
            losses.append(trailing_mean(loss, window))
            per_model = [rolling_auc(shat[:, m], y[:, m], window, ts) for m in range(y.shape[1])]
            curves.append(np.nanmean(per_model, axis=0))
            spend.append(np.cumsum(g["explore_cost"].to_numpy()) * scale)
        axes[0].plot(np.arange(1, S + 1), np.mean(losses, 0), label=f"c = {c:g}", **style)
        axes[1].plot(ts, np.nanmean(curves, 0), **style)
        axes[2].plot(np.arange(1, S + 1), np.mean(spend, 0), **style)
    axes[1].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel(f"BCE before update (mean of last {window}, or all so far)")
    axes[1].set_ylabel(f"AUC, mean over models (last {window}, or all so far)")
    axes[2].set_ylabel(f"cumulative exploration cost ({unit})")
    for ax in axes:
        ax.set_xlabel("request index t")
    axes[0].set_title(f"{bench}: predictor loss")
    axes[1].set_title("predictor AUC")
    axes[2].set_title("what exploring cost")
    axes[0].legend()
    return save(fig, out, f"learning_{bench}")


def calls(res: Results, out: Path) -> Path:
    """Share of requests answered by each model, stacked, per bench and method, MESS+ once per setting that varies
    (V, c, ...; mean over seeds and alpha). Per-model runs are left out: each answers everything with its model."""
    M = len(res.models)
    runs = (
        labelled(res.runs)
        .filter(pl.col("kind") == "policy", ~pl.col("method").str.contains(":"))
        .with_columns([pl.col("call_ratio").list.get(m).alias(f"m{m}") for m in range(M)])
        .group_by(["bench", "label"])
        .agg([pl.col(f"m{m}").mean() for m in range(M)])
        .sort("bench", "label")
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
            ax.bar(x, share, 0.7, bottom=bottom, color=COLORS[k % len(COLORS)], hatch=HATCHES[k % len(HATCHES)],
                   edgecolor="white", lw=0.3, label=res.models[k])  # fmt: skip
            bottom += share
        ax.set_xticks(x, b["label"].to_list(), rotation=35, ha="right")
        ax.set_title(bench)
        ax.grid(axis="x", visible=False)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of requests answered (%)")
    for ax in list(axes.flat)[len(benches) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, title="model (cheapest first); an exploration counts for the model whose answer it served",
               loc="lower center", ncol=min(M, 6), bbox_to_anchor=(0.5, 1.0), frameon=False)  # fmt: skip
    return save(fig, out, "calls")
