"""The paper's figures for any sweep, as PNG and SVG (text kept as text, so a figure's words can be searched and
edited). Colours are Okabe-Ito, then Paul Tol's (12 distinct in all); every series also differs by marker, hatch
or line style, so the figures survive greyscale printing. Every setting a figure does not show as an axis or a
series is named in its title."""

from __future__ import annotations

import math
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from messplus.analysis.tables import CONFIG, labelled
from messplus.common import UserError, slug
from messplus.sim.metrics import auc, bce
from messplus.sim.results import Results
from messplus.sim.routers import MESSPLUS

# Okabe-Ito, then Paul Tol's; Okabe-Ito's yellow, faint on white, last
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#882255",
          "#44AA99", "#999933", "#AA4499", "#F0E442"]  # fmt: skip
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "++", "--", "**", "||", "OO"]
plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9, "legend.fontsize": 8,
                     "svg.fonttype": "none"})  # fmt: skip
BAND = 0.15  # opacity of a min-to-max band over seeds


def save(fig, out: Path, name: str) -> Path:
    """The figure as <name>.png and .svg in out, the name made safe first (a bench may be called anything)."""
    out.mkdir(parents=True, exist_ok=True)
    name = slug(name)
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", bbox_inches="tight")
    plt.close(fig)
    return out / f"{name}.png"


def figure(rows: int, cols: int, size: tuple[float, float], **kw):
    """Panels under constrained layout: titles, labels and a legend placed `outside` take their room, no more."""
    return plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained", **kw)


def title(fig, text: str) -> None:
    """The figure's title, wrapped to its width (a long one would otherwise widen the saved figure), never inside
    "name = value"."""
    lines = textwrap.wrap(text.replace(" = ", "\u00a0=\u00a0"), width=max(50, int(12 * fig.get_figwidth())))
    fig.suptitle("\n".join(lines))
    fig.set_figheight(fig.get_figheight() + 0.2 * len(lines))  # the panels keep their height


def legend_columns(lengths: list[int], width: float) -> int:
    """The fewest rows whose columns (filled one by one, each as wide as its longest entry) fit `width` inches, in
    as few columns as those rows need (15 entries in 2 rows: 8 columns, not 14 and a lone entry below)."""
    for rows in range(1, len(lengths)):
        columns = [lengths[i : i + rows] for i in range(0, len(lengths), rows)]
        if sum(0.065 * max(c) + 0.45 for c in columns) <= width:
            return len(columns)
    return 1


def legend_below(fig, handles: list, title: str | None = None) -> None:
    """One legend under the panels, in as many columns as the figure's width holds; the figure grows by its
    height, so the panels keep theirs."""
    ncol = legend_columns([len(h.get_label()) for h in handles], fig.get_figwidth())
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False, title=title)
    fig.set_figheight(fig.get_figheight() + 0.2 * (-(-len(handles) // ncol) + (title is not None)) + 0.1)


def shown(value) -> str:
    """A setting's value as titles print it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def mess_settings(runs: pl.LazyFrame | pl.DataFrame) -> str:
    """The MESS+ settings every MESS+ run of the sweep shares, which its labels leave out ("" without MESS+)."""
    mess = runs.lazy().filter(pl.col("method") == MESSPLUS).select(*CONFIG).unique().collect()
    same = [f"{c.replace('_', ' ')} = {shown(mess[c][0])}" for c in CONFIG if mess.height and mess[c].n_unique() == 1]
    return f"MESS+ at {', '.join(same)}" if same else ""


def n_seeds(runs: pl.LazyFrame | pl.DataFrame) -> int:
    return runs.lazy().select(pl.col("seed").n_unique()).collect().item()


def over_seeds(n: int) -> str:
    """What a figure's values are: a mean over n seeds, or one seed's own."""
    return f"mean over {n}\u00a0seeds" if n > 1 else "one seed"


SHORT = 20  # a dynamics series with fewer steps than this is drawn with a marker at each step


def spread(values: list, k: int = 4) -> list:
    """At most k values, evenly spread from the first to the last."""
    if len(values) <= k:
        return values
    return [values[i] for i in np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))]


def pick(have: list[float], given: list[float], flag: str, fmt: str, bench: str) -> list[float]:
    """The values of `have` the user named: equal, or equal as the figures print them (an alpha of 0.78963 is
    "0.790" in every title, so --alpha 0.79 names it)."""
    out = []
    for g in given:
        match = [h for h in have if math.isclose(h, g, rel_tol=1e-9) or f"{h:{fmt}}" == f"{g:{fmt}}"]
        if not match:
            listed = ", ".join(f"{h:{fmt}}" for h in have)
            raise UserError(f"{flag} {g:g}: no MESS+ run of bench {bench} has it (have: {listed})")
        out += match
    return sorted(set(out))


@dataclass(frozen=True)
class Dynamics:
    """What a dynamics figure draws: MESS+ runs of one setting of c, k, feedback, cost estimate and learning, at
    the V and alpha shown; the setting in words, and what the sweep holds that the figure leaves out."""

    runs: pl.DataFrame
    Vs: list[float]
    alphas: list[float]
    setting: str
    left_out: list[str]


def dynamics_runs(
    res: Results, bench: str, alphas: list[float] | None = None, Vs: list[float] | None = None, c: float | None = None
) -> Dynamics:
    """The runs the dynamics figure of `bench` draws: at the given c, else the smallest (likewise the smallest k,
    full feedback, the first cost estimate, learning from explorations: the paper's); at the given V and alpha,
    else at most 4 of each, evenly spread. A value the results do not hold is a UserError naming those they do."""
    every = res.runs.filter(pl.col("method") == MESSPLUS, pl.col("bench") == bench).collect()
    c = pick(sorted(every["c"].unique()), [c], "--c", "g", bench)[0] if c is not None else every["c"].min()
    k, fb, est = every["k"].min(), every["feedback"].max(), every["cost_estimate"].min()
    learn = every["learn"].min()  # "explored" before "feedback": the paper's
    one = every.filter(pl.col("c") == c, pl.col("k") == k, pl.col("feedback") == fb, pl.col("cost_estimate") == est,
                       pl.col("learn") == learn)  # fmt: skip
    all_Vs, all_alphas = sorted(one["V"].unique()), sorted(one["alpha"].unique())
    Vs = pick(all_Vs, Vs, "--V", "g", bench) if Vs else spread(all_Vs)
    alphas = pick(all_alphas, alphas, "--alpha", ".3f", bench) if alphas else spread(all_alphas)
    left_out = [f"{len(shown)} of its {len(have)} {name} (choose with {flag})"
                for shown, have, name, flag in ((Vs, all_Vs, "V", "--V"), (alphas, all_alphas, "α", "--alpha"))
                if len(shown) < len(have)]  # fmt: skip
    for name, value in (("c", c), ("k", k), ("feedback", fb), ("cost_estimate", est), ("learn", learn)):
        others = ", ".join(shown(v) for v in sorted(every[name].unique()) if v != value)
        if others:
            left_out.append(f"{name.replace('_', ' ')} = {others}" + (" (choose with --c)" if name == "c" else ""))
    setting = f"c = {c:g}, k = {k:g}, feedback = {fb:g}, cost estimate {est}, learning from {learn}"
    runs = one.filter(pl.col("V").is_in(Vs), pl.col("alpha").is_in(alphas))
    return Dynamics(runs, Vs, alphas, setting, left_out)


def hold_from(runs: pl.DataFrame) -> pl.DataFrame:
    """Per (V, alpha): `t_all`, the first request after which every seed's running satisfaction stays at or above
    alpha (the latest of the seeds' own `sla_first_ok`; null where some seed ends below alpha), `below`, how many
    seeds end below it, and `seeds`."""
    first = pl.col("sla_first_ok")
    return runs.group_by("V", "alpha").agg(
        pl.when(first.null_count() == 0).then(first.max()).alias("t_all"),
        first.is_null().sum().alias("below"),
        pl.len().alias("seeds"),
    )


def mark_hold(ax, held: dict, color: str, marker: str) -> None:
    """On the SLA line: the request from which every seed holds, numbered; else how many seeds end below."""
    a = 100 * held["alpha"]
    box = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85)
    if held["t_all"] is not None:
        ax.plot([held["t_all"]], [a], marker=marker, color=color, ms=7, mfc="white", ls="none", zorder=4)
        ax.annotate(f"t = {held['t_all']}", (held["t_all"], a), xytext=(5, 4), textcoords="offset points", fontsize=7,
                    color=color, bbox=box, zorder=5)  # fmt: skip
    else:
        below = f"{held['below']} of {held['seeds']} seeds end" if held["seeds"] > 1 else "ends"
        ax.annotate(f"{below} below α", (1, a), xycoords=("axes fraction", "data"),
                    xytext=(-3, 3), textcoords="offset points", ha="right", fontsize=7, color=color, bbox=box)  # fmt: skip


def drift_blocks(axes, res: Results, bench: str, runs: pl.DataFrame) -> bool:
    """A drift stream's block starts as dashed lines, each block named by its bench at the top; False if none."""
    starts = res.meta.get("boundaries", {}).get(bench, [])
    if not starts:
        return False
    names = [part["bench"] for part in runs["segments"].to_list()[0]]  # the stream's parts, in block order
    for ax in axes.flat:
        for t in starts:
            ax.axvline(t, color="k", lw=0.8, ls="--", alpha=0.6)
    for ax in axes[0]:
        for t, name in zip([1, *starts], names, strict=False):
            ax.annotate(name, (t, 1), xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                        ha="left", va="top", fontsize=8, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))  # fmt: skip
    return True


def dynamics(
    res: Results, bench: str, out: Path, alphas: list[float] | None = None, Vs: list[float] | None = None,
    c: float | None = None,
) -> Path:  # fmt: skip
    """MESS+ over the stream: running satisfaction against the SLA, running cost per request and the virtual queue,
    a column per V, a line per alpha, mean over seeds with their min-to-max band, and the request from which every
    seed holds the SLA."""
    view = dynamics_runs(res, bench, alphas, Vs, c)
    runs, Vs, alphas = view.runs, view.Vs, view.alphas
    steps = (
        res.steps.join(runs.lazy().select("run_id", "V", "alpha"), on="run_id")
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
    held = hold_from(runs)
    unit, _ = res.unit(total=False)
    few = steps["t"].n_unique() < SHORT  # a short stream, or steps thinned by --steps-every: mark every point
    fig, axes = figure(3, len(Vs), (max(6.4, 3.4 * len(Vs) + 0.8), 7.2), sharex=True, sharey="row")
    for j, V in enumerate(Vs):
        for i, a in enumerate(alphas):
            s = steps.filter(pl.col("V") == V, pl.col("alpha") == a)
            style = dict(color=COLORS[i % len(COLORS)], ls=STYLES[i % 4], lw=1.4)
            style |= {"marker": MARKERS[i % len(MARKERS)], "ms": 4} if few else {}
            axes[0, j].plot(s["t"], 100 * s["running_satisfaction"], label=f"α = {a:.3f}", **style)
            axes[0, j].fill_between(
                s["t"], 100 * s["sat_lo"], 100 * s["sat_hi"], color=style["color"], alpha=BAND, lw=0
            )
            axes[0, j].axhline(100 * a, color=style["color"], lw=0.8, ls=(0, (1, 2)))
            axes[1, j].plot(s["t"], s["running_cost"], **style)
            axes[2, j].plot(s["t"], s["q"], **style)
            mark_hold(axes[0, j], held.filter(pl.col("V") == V, pl.col("alpha") == a).row(0, named=True),
                      style["color"], MARKERS[i % len(MARKERS)])  # fmt: skip
        axes[0, j].set_title(f"V = {V:g}")
        axes[2, j].set_xlabel("request index t (scored stream)")
    drift = drift_blocks(axes, res, bench, runs)
    t_max = steps["t"].max() or 0
    # the first requests swing wildly: a long stream's scale leaves them out, a short one shows all it has
    settled = steps.filter(pl.col("t") >= max(2, t_max // 20)) if t_max >= SHORT else steps
    if settled.height:  # one scale for every V panel (shared axes), fitted to the settled part
        lo = min(100 * settled["sat_lo"].min(), 100 * min(alphas))
        hi = max(100 * settled["sat_hi"].max(), 100 * max(alphas))
        axes[0, 0].set_ylim(lo - 0.1 * (hi - lo) - 0.5, hi + 0.15 * (hi - lo) + 0.5)  # room for the block names
        top = settled["running_cost"].max()
        if top and top > 0:  # all-zero costs: matplotlib's own scale
            axes[1, 0].set_ylim(0, 1.1 * top)
    seeds = n_seeds(runs)
    axes[0, 0].set_ylabel("running satisfaction (%)")
    axes[1, 0].set_ylabel(f"running cost per request ({unit})")
    axes[2, 0].set_ylabel("virtual queue Q")
    handles, _ = axes[0, 0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="grey", lw=0.8, ls=(0, (1, 2)), label="SLA α (dotted, in its line's colour)"))
    if held["t_all"].is_not_null().any():  # else each line says how many seeds end below, and no mark is drawn
        handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="k",
                              label="t = the first request after which every seed stays ≥ α"))  # fmt: skip
    if seeds > 1:
        handles.append(Patch(color="grey", alpha=2 * BAND, label=f"satisfaction: min to max over the {seeds} seeds"))
    if drift:
        handles.append(Line2D([], [], color="k", lw=0.8, ls="--", label="a drift block begins (named at the top)"))
    thin = res.meta.get("config", {}).get("steps_every", 1)
    notes = [view.setting] + ([f"one step in {thin} kept"] if thin > 1 else [])
    notes += [f"not shown: {', '.join(view.left_out)}"] if view.left_out else []
    title(fig, f"{bench}: MESS+ over the stream, {over_seeds(seeds)}; {'; '.join(notes)}")
    legend_below(fig, handles)
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


ALPHA_STYLES = [(":", "dotted"), ("--", "dashed"), ("-.", "dash-dot"), ("-", "solid")]  # a panel's alphas, lowest first


def alpha_key(alphas: list[float]) -> str:
    """A panel's SLA level(s) for its title: one plainly; several with the fill and line style each is drawn in."""
    if len(alphas) == 1:
        return f"α = {alphas[0]:.3f}"
    return "α = " + ", ".join(
        f"{a:.3f} ({'filled' if i == 0 else 'hollow'}, {ALPHA_STYLES[i % 4][1]})" for i, a in enumerate(alphas)
    )


def plane(res: Results, out: Path) -> Path:
    """Every method and configuration (MESS+ per setting that varies) as a point, mean over seeds; each panel's SLA
    level(s) as grey lines, and where a method has several settings, its Pareto front; the bounds as hollow black
    markers and E_OPT as a black dash at the SLA. The cost axis is logarithmic when costs span more than a decade."""
    runs = (
        labelled(res.runs)
        .group_by(["bench", "method", "kind", "label", "alpha"])
        .agg(pl.col("cost_per_request").mean(), (100 * pl.col("satisfaction")).mean().alias("satisfaction"))
        .collect()
    )
    benches = sorted(runs["bench"].unique())
    references = sorted(set(runs.filter(pl.col("kind") == "bound")["method"]) - {"opt"})  # E_OPT: a line
    labels = series_order(runs.filter(pl.col("kind") == "policy"), res.models)
    styles = {m: dict(color=COLORS[i % len(COLORS)], marker=MARKERS[i % len(MARKERS)]) for i, m in enumerate(labels)}
    cols = min(4, len(benches))
    rows = -(-len(benches) // cols)
    fig, axes = figure(rows, cols, (max(6.4, 3.9 * cols), (3.3 if cols > 2 else 4.2) * rows))
    drawn: set[str] = set()
    for ax, bench in zip(axes.flat, benches, strict=False):
        b = runs.filter(pl.col("bench") == bench)
        alphas = sorted(b["alpha"].unique())
        drawn |= plane_panel(ax, b, labels, styles, alphas, references)
        ax.set_title("\n".join(textwrap.wrap(f"{bench}: {alpha_key(alphas)}", 50)))
        ax.set_xlabel(f"cost per request ({res.unit(total=False)[0]})")
        ax.set_ylabel("satisfaction (%)")
    for ax in list(axes.flat)[len(benches) :]:
        ax.axis("off")
    handles = [Line2D([], [], ls="none", ms=6, mfc=styles[m]["color"], mec=styles[m]["color"], label=m, **styles[m])
               for m in labels]  # fmt: skip
    handles += [Line2D([], [], ls="none", marker=MARKERS[-1 - j], ms=7, mfc="none", mec="k", label=f"{m} (bound)")
                for j, m in enumerate(references)]  # fmt: skip
    if "opt" in drawn:
        handles.append(Line2D([], [], color="k", ls="--", marker="_", ms=12, label="E_OPT (bound) at the SLA"))
    handles.append(Line2D([], [], color="grey", lw=0.8, ls=":", label="SLA α (value in the panel's title)"))
    fronts = sorted(drawn - {"opt"})
    if fronts:
        label = f"Pareto front of the settings of {', '.join(fronts)} (style: its α)"
        handles.append(Line2D([], [], color="#555555", lw=0.9, label=label))
    settings = mess_settings(res.runs)
    title(fig, f"Cost against satisfaction: each point a method (MESS+: one per setting), "
               f"{over_seeds(n_seeds(res.runs))}{'; ' + settings if settings else ''}")  # fmt: skip
    legend_below(fig, handles)
    return save(fig, out, "plane")


def series_order(runs: pl.DataFrame, models: list[str]) -> list[str]:
    """Labels of the policies: MESS+ first, then the other adaptive ones, then the per-model runs
    (<method>:<model>) in zoo order."""
    labels = sorted(runs["label"].unique(), key=lambda m: (not m.startswith(MESSPLUS), m))
    per_model = {m.split(":", 1)[1]: m for m in labels if ":" in m}
    return [m for m in labels if ":" not in m] + [per_model[m] for m in models if m in per_model]


def plane_panel(ax, b: pl.DataFrame, labels: list[str], styles: dict, alphas: list[float], references: list[str]):
    """One bench: each label's point per alpha (filled at the lowest), a method's Pareto front over its settings,
    the bounds, E_OPT and the SLA lines. Returns what it drew of the optional parts: "opt",
    and the methods whose front it drew."""
    drawn = set()
    for i, a in enumerate(alphas):
        at = b.filter(pl.col("alpha") == a)
        ls = ALPHA_STYLES[i % 4][0]
        for m in labels:
            pts = at.filter(pl.col("label") == m).select("cost_per_request", "satisfaction").drop_nulls().to_numpy()
            if len(pts):
                st = styles[m]
                ax.scatter(pts[:, 0], pts[:, 1], s=34, marker=st["marker"], edgecolors=st["color"], zorder=3,
                           facecolors=st["color"] if i == 0 else "none")  # fmt: skip
        for (method,), g in at.filter(pl.col("kind") == "policy").group_by("method"):
            pts = g.select("cost_per_request", "satisfaction").drop_nulls().to_numpy()
            if len(pts) > 1:
                front = pareto(pts)
                ax.step(front[:, 0], front[:, 1], where="post", color="#555555", lw=0.9, ls=ls, zorder=1)
                drawn.add(method)
        ax.axhline(100 * a, color="grey", lw=0.8, ls=ls)
    for j, m in enumerate(references):
        pts = b.filter(pl.col("method") == m).drop_nulls("cost_per_request")
        ax.scatter(pts["cost_per_request"], pts["satisfaction"], s=40, facecolors="none", edgecolors="k",
                   marker=MARKERS[-1 - j], zorder=2)  # fmt: skip
    opt = b.filter(pl.col("method") == "opt").drop_nulls("cost_per_request").sort("alpha")
    if opt.height:
        ax.plot(opt["cost_per_request"], 100 * opt["alpha"], "k--", lw=1, marker="_", ms=12)
        drawn.add("opt")
    costs = b["cost_per_request"].drop_nulls().to_numpy()
    if len(costs) and costs.min() > 0 and costs.max() > 10 * costs.min():
        ax.set_xscale("log")
    return drawn


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """[S] mean of the last `window` values at each t, of all of them before t reaches the window (from t = 1)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(1, len(x) + 1)
    start = np.maximum(t - window, 0)
    return (c[t] - c[start]) / (t - start)


def rolling_auc(shat: np.ndarray, y: np.ndarray, window: int, ts: np.ndarray) -> np.ndarray:
    """[n] AUC of the last `window` pre-update predictions (all of them, early on) at each t in ts."""
    return np.array([auc(shat[max(0, t - window) : t], y[max(0, t - window) : t]) for t in ts])


def mean_auc(shat: np.ndarray, y: np.ndarray, window: int, ts: np.ndarray) -> np.ndarray:
    """[n] rolling AUC (`rolling_auc`) at each t in ts, mean over the models that have one there (NaN: none has)."""
    per_model = [rolling_auc(shat[:, m], y[:, m], window, ts) for m in range(y.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no model with both outcomes in the window: a gap
        return np.nanmean(per_model, 0)


def band(ax, x: np.ndarray, curves: list[np.ndarray], style: dict, label: str | None = None) -> None:
    """The mean of per-seed curves as a line, their min to max as a band (NaN: no AUC on that seed there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point with no AUC on any seed: a gap, not a warning
        mean, lo, hi = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
    ax.plot(x, mean, label=label, **style)
    ax.fill_between(x, lo, hi, color=style["color"], alpha=BAND, lw=0)


def learning(res: Results, bench: str, out: Path) -> Path:
    """The predictor's loss and AUC against request index, with what exploring cost: a line per c (and k, where it
    varies), the mean over seeds with their min-to-max band."""
    pred = res.predictions.filter(pl.col("bench") == bench).sort("seed", "c", "k", "t").collect()
    if pred.is_empty():
        raise UserError(f"bench {bench}: predictions.parquet holds none of its MESS+ predictions; the results are "
                        "damaged: rerun `sim sweep`")  # fmt: skip
    S = pred["t"].max()
    window, stride = max(50, min(400, S // 4)), max(1, S // 100)
    ts = np.unique(
        np.r_[np.arange(10, window, max(1, window // 20)), np.arange(window, S + 1, stride)]
    )  # from early on
    unit, scale = res.unit(total=True)
    ks = sorted(pred["k"].unique())
    fig, axes = figure(1, 3, (13, 3.6))
    for i, ((c, k), setting) in enumerate(pred.group_by(["c", "k"], maintain_order=True)):
        style = dict(color=COLORS[i % len(COLORS)], ls=STYLES[i % 4], lw=1.3)
        losses, curves, spend = [], [], []
        for _seed, g in setting.group_by("seed", maintain_order=True):
            shat, y = np.stack(g["shat"].to_numpy()), np.stack(g["label"].to_numpy())
            losses.append(trailing_mean(bce(shat, y), window))
            curves.append(mean_auc(shat, y, window, ts))
            spend.append(np.cumsum(g["explore_cost"].to_numpy()) * scale)
        label = f"c = {c:g}" + (f", k = {k:g}" if len(ks) > 1 else "")
        band(axes[0, 0], np.arange(1, S + 1), losses, style, label)
        band(axes[0, 1], ts, curves, style)
        band(axes[0, 2], np.arange(1, S + 1), spend, style)
    axes[0, 1].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0, 0].set_ylabel("BCE before each update (nats)")
    axes[0, 1].set_ylabel(f"AUC, mean over the {len(res.models)} models")
    axes[0, 2].set_ylabel(f"cumulative exploration cost ({unit})")
    for ax in axes.flat:
        ax.set_xlabel("request index t (scored stream)")
    axes[0, 0].set_title("predictor loss")
    axes[0, 1].set_title("predictor AUC (0.5: chance, dotted)")
    axes[0, 2].set_title("what exploring cost (every model answers)")
    seeds = pred["seed"].n_unique()
    handles, _ = axes[0, 0].get_legend_handles_labels()
    if seeds > 1:
        handles.append(Patch(color="grey", alpha=2 * BAND, label=f"min to max over the {seeds} seeds"))
    k_note = "" if len(ks) > 1 else f", k = {ks[0]:g}"
    title(fig, f"{bench}: the MESS+ predictor, {over_seeds(seeds)}{k_note}; loss and AUC over the last {window} "
               f"requests (all so far before t = {window})")  # fmt: skip
    legend_below(fig, handles)
    return save(fig, out, f"learning_{bench}")


def calls(res: Results, out: Path) -> Path:
    """Share of requests answered by each model, as stacked horizontal bars: a panel per bench and alpha, a bar per
    method (MESS+ once per setting that varies: V, c, ...), mean over seeds. Per-model runs are left out: each
    answers everything with its model."""
    M = len(res.models)
    runs = (
        labelled(res.runs)
        .filter(pl.col("kind") == "policy", ~pl.col("method").str.contains(":"))
        .with_columns([pl.col("call_ratio").list.get(m).alias(f"m{m}") for m in range(M)])
        .group_by(["bench", "alpha", "label"])
        .agg([(pl.col(f"m{m}") * 100).mean() for m in range(M)])
        .collect()
    )
    labels = series_order(runs, res.models)
    panels = runs.select("bench", "alpha").unique().sort("bench", "alpha").rows()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    width = max(6.4, 2.6 * cols + 0.07 * max(map(len, labels)))
    fig, axes = figure(rows, cols, (width, (0.22 * len(labels) + 1.1) * rows), sharey=True)
    y = np.arange(len(labels))
    for i, (ax, (bench, alpha)) in enumerate(zip(axes.flat, panels, strict=False)):
        b = runs.filter(pl.col("bench") == bench, pl.col("alpha") == alpha)
        shares = np.zeros((len(labels), M))  # a label without runs here: an empty bar
        for r in b.iter_rows(named=True):
            shares[labels.index(r["label"])] = [r[f"m{m}"] for m in range(M)]
        left = np.zeros(len(labels))
        for k in range(M):
            ax.barh(y, shares[:, k], 0.7, left=left, color=COLORS[k % len(COLORS)], hatch=HATCHES[k % len(HATCHES)],
                    edgecolor="white", lw=0.3, label=res.models[k])  # fmt: skip
            left += shares[:, k]
        ax.set_title(f"{bench}: α = {alpha:.3f}")
        ax.grid(axis="y", visible=False)
        ax.set_xlim(0, 100)
        if i + cols >= len(panels):  # the lowest panel of its column
            ax.set_xlabel("share of requests answered (%)")
    axes[0, 0].set_yticks(y, labels)
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)  # the first label on top
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, _ = axes.flat[0].get_legend_handles_labels()
    settings = mess_settings(res.runs)
    title(fig, f"Which model answered: share of the scored requests per method, {over_seeds(n_seeds(res.runs))}"
               f"{'; ' + settings if settings else ''}; single-model baselines left out")  # fmt: skip
    legend_below(fig, handles, "model (cheapest first); an exploration counts for the model whose answer it served")
    return save(fig, out, "calls")
