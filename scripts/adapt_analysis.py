#!/usr/bin/env python3
"""Tables of the adaptation study (scripts/adapt_study.sh) from its results.csv.

    scripts/adapt_analysis.py RESULTS.csv [--against lora]
    scripts/adapt_analysis.py --curves DIR     (the B-loss curves, one CSV)

Per budget (LoRA rank k and the arms matched to it; "-" for the arms that
have none): each arm's trainable share, B loss after adaptation (mean and
sample std over seeds), A loss after and its change from before adaptation
(forgetting: > 0 lost A), mean wall seconds, and the paired difference of
its B loss against the `--against` arm of the same budget and seed, with a
95% t interval. Losses in nats per byte. A CSV with an `lr` column (the
lr sweeps) is grouped by lr too.
"""
import csv
import os
import re
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from growth_analysis import fmt_gap, fmt_mean_std, t_interval  # noqa: E402  (the same statistics)


def paired(a, b):
    """fmt_gap of a - b over the seeds both have (mean and 95% t interval)"""
    d = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    return fmt_gap(t_interval(d)) if d else "-"


def curves(folder):
    """The eval rows of the arms' --log CSVs (not the bases'), as one CSV on stdout."""
    out = []
    for name in os.listdir(folder):
        m = re.fullmatch(r"s(\d+)_([a-z0-9_]+?)_(\d+|-)\.csv", name)
        if not m:
            continue
        with open(os.path.join(folder, name)) as f:
            out += [(int(m[1]), m[2], m[3], int(r["iter"]), int(r["tokens"]), r["val_loss"])
                    for r in csv.DictReader(f) if r["event"] == "eval" and r["val_loss"]]
    print("seed,arm,budget,iter,tokens,val_B")
    for row in sorted(out):
        print(",".join(str(x) for x in row))
    return 0 if out else 1


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    if args[0] == "--curves":
        return curves(args[1])
    against = "lora"
    if "--against" in args:
        i = args.index("--against")
        against = args[i + 1]
        del args[i:i + 2]
    rows = list(csv.DictReader(open(args[0])))
    groups = defaultdict(dict)  # (lr, budget, arm) -> seed -> row
    for r in rows:
        groups[(r.get("lr", ""), r["budget"], r["arm"])][r["seed"]] = r
    order = ["full", "native_nf", "last1", "lora", "adapter", "native"]
    for lr in sorted({k[0] for k in groups}):
        budgets = sorted({k[1] for k in groups if k[0] == lr}, key=lambda b: (b != "-", int(b) if b.isdigit() else 0))
        for b in budgets:
            print(f"\nbudget {b}" + (f", lr {lr}" if lr else ""))
            print(f"\n| arm | trainable | seeds | B after | A after | A after minus before | "
                  f"B minus {against} [95% CI] | wall s |")
            print("|---|---|---|---|---|---|---|---|")
            base = groups.get((lr, b, against), {})
            arms = sorted((k[2] for k in groups if k[0] == lr and k[1] == b),
                          key=lambda a: order.index(a) if a in order else len(order))
            for arm in arms:
                g = groups[(lr, b, arm)]
                any_row = next(iter(g.values()))
                share = 100.0 * int(any_row["trainable"]) / int(any_row["total"])
                b_after = [float(r["val_B_after"]) for r in g.values()]
                am = statistics.mean(float(r["val_A_after"]) for r in g.values())
                forgot = statistics.mean(float(r["val_A_after"]) - float(r["val_A_before"]) for r in g.values())
                wall = statistics.mean(float(r["wall_s"]) for r in g.values())
                diff = "-"
                if arm != against and base:
                    diff = paired({s: float(r["val_B_after"]) for s, r in g.items()},
                                  {s: float(r["val_B_after"]) for s, r in base.items()})
                print(f"| {arm} | {int(any_row['trainable']):,} ({share:.2f}%) | {len(g)} | "
                      f"{fmt_mean_std(b_after)} | {am:.4f} | {forgot:+.4f} | {diff} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
