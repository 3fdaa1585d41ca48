#!/usr/bin/env python3
"""Growth study II analysis (scripts/growth_study2.sh, issue 27); python3 stdlib only.

    scripts/growth_analysis.py OUTDIR [--csv FILE] [--plot PREFIX] [--boot N] [--seed S]
    scripts/growth_analysis.py OUTDIR --paired A B     (arm A against arm B, alone)

Reads OUTDIR/**/result.csv (one row per run: arm, arch, kind, lr, budget, seed,
stage_flops, cum_flops, final_loss, wall_s, base_budget, frac) and prints markdown:

- per arch and budget, one row per configuration (arm at one lr): final `eval --full`
  loss mean +- std over seeds; the gap to the frontier (the scratch configuration with
  the lowest mean loss at that budget) paired by seed with a 95% t interval; the
  effective compute multiplier (the compute at which the frontier reaches the row's
  mean loss, read from the frontier's losses across budgets by log-log interpolation,
  divided by the row's compute) with a 95% bootstrap interval over seeds (the frontier
  re-chosen in every resample); wall seconds;
- the reuse table (stage-only and cumulative accounting);
- a verdict per configuration: "growth pays" only where the multiplier's interval
  lies above 1 at two or more budgets.
--csv FILE writes the per-budget rows (and the reuse rows) machine-readably, with the
verdict (pays | costs | not_shown | frontier) of each configuration.
--paired A B prints only the difference of arm A minus arm B at each lr and budget
both ran, paired by seed with a 95% t interval; a `*` in A stands for any text and
the same text in B (--paired '*_wsd' '*': every arm under WSD against itself under
cosine), with a count per kind of how many A ended below B.
"""
import argparse
import csv
import glob
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
MAIN_KINDS = ("scratch", "rerun", "control", "grown")
REUSE_KINDS = ("reuse_grow", "reuse_cont", "reuse_scratch")


def read_results(out):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "**", "result.csv"), recursive=True)):
        with open(path) as f:
            for r in csv.DictReader(f):
                try:
                    r["budget"] = float(r["budget"])
                    r["base_budget"] = float(r["base_budget"])
                    for k in ("stage_flops", "cum_flops", "final_loss", "wall_s"):
                        r[k] = float(r[k])
                except (KeyError, ValueError):
                    sys.exit(f"growth_analysis: error: {path}: not a growth_study2 result row")
                r["dir"] = os.path.dirname(path)
                rows.append(r)
    return rows


def t_interval(xs):
    """Mean and 95% half-width of a paired difference (None with fewer than 2 seeds)."""
    m = statistics.mean(xs)
    if len(xs) < 2:
        return m, None
    df = len(xs) - 1
    return m, T975.get(df, 1.96 + 2.4 / df) * statistics.stdev(xs) / math.sqrt(len(xs))


def mean_over(by_seed, seeds):
    xs = [by_seed[s] for s in seeds if s in by_seed]
    return statistics.mean(xs) if xs else None


def frontier_choice(scratch, budget, seeds):
    """The scratch configuration with the lowest mean loss at BUDGET over SEEDS."""
    best = None
    for key, by_seed in scratch.get(budget, {}).items():
        m = mean_over(by_seed, seeds)
        if m is not None and (best is None or m < best[1]):
            best = (key, m)
    return best


def frontier_curve(scratch, seeds):
    """[(budget, loss)] of the frontier, made non-increasing in compute (a larger budget
    can always stop early at a smaller one's loss)."""
    pts = []
    for b in sorted(scratch):
        c = frontier_choice(scratch, b, seeds)
        if c:
            pts.append((b, c[1]))
    mono, low = [], math.inf
    for b, l in pts:
        low = min(low, l)
        mono.append((b, low))
    return mono


def compute_to_reach(curve, loss):
    """Compute at which the frontier reaches LOSS: log-log interpolation between its
    points, extrapolated along the end segments (flagged) outside them."""
    if len(curve) < 2:
        return None, False
    lc = [(math.log(b), math.log(l)) for b, l in curve]
    y = math.log(loss)
    for (x0, y0), (x1, y1) in zip(lc, lc[1:]):
        if y1 <= y <= y0 and y0 > y1:
            return math.exp(x0 + (y - y0) * (x1 - x0) / (y1 - y0)), False
    seg = lc[:2] if y > lc[0][1] else lc[-2:]
    (x0, y0), (x1, y1) = seg
    if y0 <= y1:  # a flat end: no slope to extrapolate along
        return None, True
    return math.exp(x0 + (y - y0) * (x1 - x0) / (y1 - y0)), True


def multiplier(curve, loss, compute):
    c, extrapolated = compute_to_reach(curve, loss)
    return (c / compute if c else None), extrapolated


def percentile(xs, q):
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo, hi = math.floor(i), math.ceil(i)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


class Study:
    def __init__(self, rows, arch, boot, rng):
        self.rows = [r for r in rows if r["arch"] == arch]
        self.arch, self.boot, self.rng = arch, boot, rng
        self.seeds = sorted({r["seed"] for r in self.rows})
        # scratch[budget][(arm, lr)][seed] = loss
        self.scratch = {}
        for r in self.rows:
            if r["kind"] == "scratch":
                self.scratch.setdefault(r["budget"], {}).setdefault((r["arm"], r["lr"]), {})[r["seed"]] = r["final_loss"]
        self.curve = frontier_curve(self.scratch, self.seeds)
        self.resamples = [[rng.choice(self.seeds) for _ in self.seeds] for _ in range(boot)]
        self.boot_curves = [frontier_curve(self.scratch, s) for s in self.resamples]

    def multiplier_interval(self, by_seed, compute_of_seeds):
        """Bootstrap over seeds (the same resample for the row and the frontier)."""
        ms = []
        for seeds, curve in zip(self.resamples, self.boot_curves):
            m = mean_over(by_seed, seeds)
            c = compute_of_seeds(seeds)
            if m is None or c is None:
                continue
            x, _ = multiplier(curve, m, c)
            if x is not None:
                ms.append(x)
        if len(ms) < max(10, self.boot // 2):
            return None
        return percentile(ms, 0.025), percentile(ms, 0.975)

    def gap(self, by_seed, budget):
        choice = frontier_choice(self.scratch, budget, self.seeds)
        if not choice:
            return None
        ref = self.scratch[budget][choice[0]]
        diffs = [by_seed[s] - ref[s] for s in self.seeds if s in by_seed and s in ref]
        return t_interval(diffs) if diffs else None


def crossing(run_dir, ref_dir, budget):
    """The share of BUDGET at which the run's val curve (fixed eval batches on the FLOPs
    grid) first reaches the reference run's last logged val loss, interpolated linearly
    between evaluations; None if it never does."""
    ref, pts = eval_curve(ref_dir), eval_curve(run_dir)
    if not ref or not pts:
        return None
    target = ref[-1][1]
    prev = None
    for x, y in pts:
        if y <= target:
            if prev is None or prev[1] == y:
                return x / budget
            x0, y0 = prev
            return (x0 + (y0 - target) * (x - x0) / (y0 - y)) / budget
        prev = (x, y)
    return None


def fmt_crossing(runs, ref_runs, budget):
    ref = {r["seed"]: r["dir"] for r in ref_runs}
    xs = [crossing(r["dir"], ref[r["seed"]], budget) for r in runs if r["seed"] in ref]
    if not xs:
        return "–"
    hit = [x for x in xs if x is not None]
    if not hit:
        return "never"
    s = f"{statistics.mean(hit):.2f}"
    return s if len(hit) == len(xs) else f"{s} ({len(xs) - len(hit)} of {len(xs)} never)"


def fmt_mean_std(xs, nd=4):
    if len(xs) == 1:
        return f"{xs[0]:.{nd}f}"
    return f"{statistics.mean(xs):.{nd}f} ± {statistics.stdev(xs):.{nd}f}"


def fmt_gap(g):
    if g is None:
        return "–"
    m, h = g
    return f"{m:+.4f}" if h is None else f"{m:+.4f} [{m - h:+.4f}, {m + h:+.4f}]"


def fmt_mult(point, interval):
    x, extrapolated = point
    if x is None:
        return "–"
    s = f"{x:.2f}{'*' if extrapolated else ''}"
    if interval:
        s += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return s


def by_config(rows):
    out = {}
    for r in rows:
        out.setdefault((r["arm"], r["lr"]), []).append(r)
    return out


def compute_fn(runs, field):
    by_seed = {r["seed"]: r[field] for r in runs}
    return lambda seeds: mean_over(by_seed, seeds)


def main_tables(st, verdicts):
    budgets = sorted({r["budget"] for r in st.rows if r["kind"] in MAIN_KINDS})
    if not budgets:
        return
    fr = ", ".join(f"{b:.3g}: {l:.4f}" for b, l in st.curve)
    print(f"## {st.arch}\n\nFrontier (best scratch mean final loss per budget, FLOPs: loss): {fr}\n")
    for b in budgets:
        choice = frontier_choice(st.scratch, b, st.seeds)
        print(f"### {st.arch}, budget {b:.3g} FLOPs (frontier: {choice[0][0]} lr {choice[0][1]})\n" if choice
              else f"### {st.arch}, budget {b:.3g} FLOPs (no scratch run: no frontier)\n")
        print("| arm | lr | kind | seeds | final loss (mean ± std) | gap to frontier [95% CI] | compute multiplier [95% CI] | reaches the frontier's final val loss at (share of budget) | wall s |")
        print("|---|---|---|---|---|---|---|---|---|")
        runs_at = by_config([r for r in st.rows if r["budget"] == b and r["kind"] in MAIN_KINDS])
        ref_runs = runs_at.get(choice[0], []) if choice else []
        for (arm, lr), runs in sorted(runs_at.items(), key=lambda kv: statistics.mean(r["final_loss"] for r in kv[1])):
            losses = [r["final_loss"] for r in runs]
            by_seed = {r["seed"]: r["final_loss"] for r in runs}
            comp = compute_fn(runs, "cum_flops")
            point = multiplier(st.curve, statistics.mean(losses), comp(st.seeds))
            interval = st.multiplier_interval(by_seed, comp)
            verdicts.setdefault((st.arch, arm, lr, runs[0]["kind"]), []).append((b, interval))
            TABLE.append(table_row(st.arch, arm, lr, runs[0]["kind"], b, losses, st.gap(by_seed, b), point,
                                   interval, runs))
            print(f"| {arm} | {lr} | {runs[0]['kind']} | {len(runs)} | {fmt_mean_std(losses)} | "
                  f"{fmt_gap(st.gap(by_seed, b))} | {fmt_mult(point, interval)} | {fmt_crossing(runs, ref_runs, b)} | "
                  f"{statistics.mean(r['wall_s'] for r in runs):.0f} |")
        print()


def reuse_table(st):
    rows = [r for r in st.rows if r["kind"] in REUSE_KINDS]
    if not rows:
        return
    print(f"### {st.arch}: reuse (a small model trained at budget C, its cost sunk; then dC = f x C more)\n")
    print("Multipliers read from the frontier: stage only (compute dC) and cumulative (C + dC; the "
          "scratch arm's compute is dC either way). Gaps are paired by seed: reuse_grow minus the row.\n")
    print("| C | f | arm | seeds | final loss (mean ± std) | multiplier, stage [95% CI] | multiplier, cumulative [95% CI] | reuse_grow minus this [95% CI] | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = {}  # the arms of one (C, f) and schedule: reuse_grow with reuse_cont, ... with _wsd
    for r in rows:
        groups.setdefault((r["base_budget"], float(r["frac"]), r["arm"][len(r["kind"]):]), []).append(r)
    for (c, f, _), rs in sorted(groups.items()):
        grown = {r["seed"]: r["final_loss"] for r in rs if r["kind"] == "reuse_grow"}
        for kind in REUSE_KINDS:
            runs = [r for r in rs if r["kind"] == kind]
            if not runs:
                continue
            losses = [r["final_loss"] for r in runs]
            by_seed = {r["seed"]: r["final_loss"] for r in runs}
            cells = []
            for field in ("stage_flops", "cum_flops"):
                comp = compute_fn(runs, field)
                cells.append(fmt_mult(multiplier(st.curve, statistics.mean(losses), comp(st.seeds)),
                                      st.multiplier_interval(by_seed, comp)))
            diffs = [grown[s] - by_seed[s] for s in st.seeds if s in grown and s in by_seed]
            gap = fmt_gap(t_interval(diffs)) if diffs and kind != "reuse_grow" else "–"
            comp = compute_fn(runs, "stage_flops")
            TABLE.append(table_row(st.arch, runs[0]["arm"], runs[0]["lr"], kind, c, losses,
                                   t_interval(diffs) if diffs and kind != "reuse_grow" else None,
                                   multiplier(st.curve, statistics.mean(losses), comp(st.seeds)),
                                   st.multiplier_interval(by_seed, comp), runs, f))
            print(f"| {c:.3g} | {f:g} | {runs[0]['arm']} | {len(runs)} | {fmt_mean_std(losses)} | {cells[0]} | "
                  f"{cells[1]} | {gap} | {statistics.mean(r['wall_s'] for r in runs):.0f} |")
    print()


TABLE = []  # the rows of --csv
CSV_FIELDS = ["arch", "arm", "lr", "kind", "budget", "frac", "seeds", "loss_mean", "loss_std", "gap", "gap_lo",
              "gap_hi", "multiplier", "mult_lo", "mult_hi", "extrapolated", "wall_s", "verdict"]


def table_row(arch, arm, lr, kind, budget, losses, gap, point, interval, runs, frac=""):
    """One --csv row; for reuse rows BUDGET is the base budget C, the gap is reuse_grow
    minus the row and the multiplier is the stage-only one."""
    g, h = gap if gap else ("", None)
    return {"arch": arch, "arm": arm, "lr": lr, "kind": kind, "budget": f"{budget:.6g}", "frac": frac,
            "seeds": len(losses), "loss_mean": f"{statistics.mean(losses):.6f}",
            "loss_std": f"{statistics.stdev(losses):.6f}" if len(losses) > 1 else "",
            "gap": f"{g:.6f}" if g != "" else "", "gap_lo": f"{g - h:.6f}" if h is not None else "",
            "gap_hi": f"{g + h:.6f}" if h is not None else "",
            "multiplier": f"{point[0]:.6f}" if point[0] is not None else "", "mult_lo": f"{interval[0]:.6f}" if interval else "",
            "mult_hi": f"{interval[1]:.6f}" if interval else "", "extrapolated": int(bool(point[1])),
            "wall_s": f"{statistics.mean(r['wall_s'] for r in runs):.1f}", "verdict": ""}


def lowest_by(items, key, loss):
    """{key(item): the item with the lowest loss(item)} (an arm's best lr, per budget)."""
    best = {}
    for it in items:
        k = key(it)
        if k not in best or loss(it) < loss(best[k]):
            best[k] = it
    return best


def lead_tables(path, seconds):
    """--lead: one table per budget, every arch together, each arm at its best lr
    there (lowest mean loss): the summary a reader sees first."""
    rows = [r for r in TABLE if r["kind"] in MAIN_KINDS]
    num = lambda r, k: float(r[k]) if r[k] != "" else None
    with open(path, "w") as f:
        for b in sorted({float(r["budget"]) for r in rows}):
            best = lowest_by([r for r in rows if float(r["budget"]) == b], lambda r: (r["arch"], r["arm"]),
                             lambda r: float(r["loss_mean"]))
            f.write(f"Budget {b:.3g} FLOPs\n\n| arch | arm (lr) | kind | final loss | gap to the frontier [95% CI] "
                    f"| compute multiplier [95% CI] | {seconds} | verdict (this lr, all budgets) |\n"
                    "|---|---|---|---|---|---|---|---|\n")
            for r in sorted(best.values(), key=lambda r: (r["arch"], float(r["loss_mean"]))):
                loss = f"{float(r['loss_mean']):.4f}" + (f" ± {float(r['loss_std']):.4f}" if r["loss_std"] else "")
                g, hi = num(r, "gap"), num(r, "gap_hi")
                gap = fmt_gap(None if g is None else (g, None if hi is None else hi - g))
                lo_hi = (num(r, "mult_lo"), num(r, "mult_hi")) if r["mult_lo"] else None
                mult = fmt_mult((num(r, "multiplier"), r["extrapolated"]), lo_hi)
                f.write(f"| {r['arch']} | {r['arm']} ({r['lr']}) | {r['kind']} | {loss} | {gap} | {mult} | "
                        f"{float(r['wall_s']):.0f} | {r['verdict'] if r['kind'] != 'scratch' else ''} |\n")
            f.write("\n")


def verdict_of(kind, per_budget):
    if kind == "scratch":
        return "frontier", ""
    if kind == "rerun":
        return "noise_floor", ""
    above = [b for b, iv in per_budget if iv and iv[0] > 1]
    below = [b for b, iv in per_budget if iv and iv[1] < 1]
    where = "; ".join(f"interval {side} 1 at " + ", ".join(f"{b:.3g}" for b in bs) + " FLOPs"
                      for side, bs in (("above", above), ("below", below)) if bs)
    where = f" ({where})" if where else ""
    if len(above) >= 2:
        return "pays", "growth pays" + where
    if below:
        return "costs", "costs compute" + where
    return "not_shown", "not shown to pay" + where


def print_verdicts(verdicts):
    print("## Verdict (fixed before the runs: growth pays only where the multiplier's 95% interval "
          "lies above 1 at two or more budgets)\n")
    for (arch, arm, lr, kind), per_budget in sorted(verdicts.items()):
        word, text = verdict_of(kind, per_budget)
        for row in TABLE:
            if (row["arch"], row["arm"], row["lr"], row["kind"]) == (arch, arm, lr, kind):
                row["verdict"] = word
        if kind not in ("scratch", "rerun"):
            print(f"- {arch} {arm} lr {lr} ({kind}): {text}")
    print()


def eval_curve(run_dir):
    pts = []
    try:
        with open(os.path.join(run_dir, "log.csv")) as f:
            for r in csv.DictReader(f):
                if r.get("event") == "eval" and r.get("val_loss"):
                    pts.append((float(r["flops"]), float(r["val_loss"])))
    except OSError:
        pass
    return [p for p in pts if p[0] > 0]


def plot(studies, prefix):
    """PREFIX-final.png: final loss vs FLOPs, one line per arm (its best lr at each budget)
    with each arch's frontier drawn; PREFIX-curves.png: the eval curves (first seed) at
    the largest budget, each arm at its best lr there."""
    if not shutil.which("gnuplot"):
        print("(no plots: gnuplot is not installed)\n")
        return
    with tempfile.TemporaryDirectory() as work:
        draw(studies, prefix, work)


def best_lr_per_budget(configs):
    """{arm: {budget: (mean final loss, lr)}}: at each budget the arm's lr with the lowest
    mean, so that a plot has one line per arm (the tables list every lr)."""
    points = []
    for (arm, lr), runs in configs.items():
        per_b = {}
        for r in runs:
            per_b.setdefault(r["budget"], []).append(r["final_loss"])
        points += [(arm, b, statistics.mean(losses), lr) for b, losses in per_b.items()]
    best = {}
    for (arm, b), (_, _, mean, lr) in lowest_by(points, lambda p: p[:2], lambda p: p[2]).items():
        best.setdefault(arm, {})[b] = (mean, lr)
    return best


def draw(studies, prefix, work):
    final_cmds, curve_cmds = [], []
    for st in studies:
        path = os.path.join(work, f"frontier-{st.arch}.dat")
        with open(path, "w") as f:
            f.writelines(f"{b} {l}\n" for b, l in st.curve)
        final_cmds.append(f"'{path}' using 1:2 with linespoints lw 3 title '{st.arch} frontier'")
        best = best_lr_per_budget(by_config([r for r in st.rows if r["kind"] in MAIN_KINDS]))
        for arm, points in sorted(best.items()):
            path = os.path.join(work, f"final-{st.arch}-{arm}.dat")
            with open(path, "w") as f:
                f.writelines(f"{b} {loss}\n" for b, (loss, _) in sorted(points.items()))
            final_cmds.append(f"'{path}' using 1:2 with linespoints title '{arm}'")
        main = [r for r in st.rows if r["kind"] in MAIN_KINDS]
        if main:
            top = max(r["budget"] for r in main)
            first = min(st.seeds)
            for r in main:
                if r["budget"] == top and r["seed"] == first and best[r["arm"]].get(top, (0, None))[1] == r["lr"]:
                    pts = eval_curve(r["dir"])
                    path = os.path.join(work, f"curve-{st.arch}-{r['arm']}-{r['lr']}.dat")
                    with open(path, "w") as f:
                        f.writelines(f"{x} {y}\n" for x, y in pts)
                    curve_cmds.append(f"'{path}' using 1:2 with lines title '{r['arm']} lr {r['lr']}'")
    script = (f"set terminal pngcairo size 1100,700 noenhanced\nset logscale x\nset key outside right\n"
              f"set xlabel 'training FLOPs'\nset ylabel 'final full-val loss (nats)'\n"
              f"set output '{prefix}-final.png'\nplot " + ", ".join(final_cmds) + "\n")
    if curve_cmds:
        script += (f"set ylabel 'val loss on the fixed eval batches (nats)'\nset output '{prefix}-curves.png'\n"
                   "plot " + ", ".join(curve_cmds) + "\n")
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
        print(f"Plots: {prefix}-final.png (final loss vs FLOPs, frontier bold), {prefix}-curves.png\n")
    except subprocess.CalledProcessError as e:
        print(f"(plot failed: {e.stderr.strip().splitlines()[-1] if e.stderr.strip() else e})\n")


def paired_table(rows, a_pat, b_pat):
    """--paired: A minus B per (arm, lr, budget), paired by seed; the count per kind."""
    a_rx = re.compile("^" + re.escape(a_pat).replace(r"\*", "(.*)") + "$")
    loss, kind = {}, {}
    for r in rows:
        loss.setdefault((r["arm"], r["lr"], r["budget"]), {})[r["seed"]] = r["final_loss"]
        kind[r["arm"]] = r["kind"]
    print("| A | B | kind | lr | budget | seeds | A minus B [95% CI] |\n|---|---|---|---|---|---|---|")
    count = {}  # kind -> [A below B, pairs]
    for (arm, lr, b), la in sorted(loss.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        m = a_rx.match(arm)
        if not m:
            continue
        other = b_pat.replace("*", m.group(1)) if m.groups() else b_pat
        lb = loss.get((other, lr, b), {})
        d = [la[s] - lb[s] for s in sorted(la) if s in lb]
        if not d:
            continue
        g = t_interval(d)
        c = count.setdefault(kind[arm], [0, 0])
        c[0] += g[0] < 0
        c[1] += 1
        print(f"| {arm} | {other} | {kind[arm]} | {lr} | {b:.3g} | {len(d)} | {fmt_gap(g)} |")
    print("\n" + "; ".join(f"{k}: A below B in {c[0]} of {c[1]}" for k, c in sorted(count.items())))
    return 0 if count else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--plot", metavar="PREFIX")
    ap.add_argument("--csv", metavar="FILE")
    ap.add_argument("--lead", metavar="FILE", help="also write the per-budget summary tables (each arm at its best lr)")
    ap.add_argument("--seconds", default="wall s", help="--lead's name for the wall-time column (e.g. GPU s)")
    ap.add_argument("--paired", nargs=2, metavar=("A", "B"), help="only A minus B per lr and budget, by seed")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rows = read_results(a.out)
    if not rows:
        sys.exit(f"growth_analysis: error: no result.csv under {a.out}")
    if a.paired:
        sys.exit(paired_table(rows, *a.paired))
    rng = random.Random(a.seed)
    studies = [Study(rows, arch, a.boot, rng) for arch in sorted({r["arch"] for r in rows})]
    print(f"# Growth study II: {len(rows)} runs from {a.out}\n")
    print("Loss: final `eval --full` val loss (nats). Multiplier: frontier compute to reach the row's mean "
          "loss / the row's compute (> 1: the row saves compute); * = read outside the frontier's budgets "
          "(extrapolated). Intervals: gap, paired t over seeds; multiplier, bootstrap over seeds.\n")
    few = sorted({st.arch for st in studies if len(st.seeds) < 3})
    if few:
        print(f"**Fewer than 3 seeds ({', '.join(few)}): the t intervals are wide and the bootstrap has few "
              "distinct resamples (3 with 2 seeds), so its intervals are too narrow; verdicts are not "
              "evidence.**\n")
    verdicts = {}
    for st in studies:
        main_tables(st, verdicts)
        reuse_table(st)
    print_verdicts(verdicts)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
            w.writeheader()
            w.writerows(TABLE)
    if a.lead:
        lead_tables(a.lead, a.seconds)
    if a.plot:
        plot(studies, a.plot)


if __name__ == "__main__":
    main()
