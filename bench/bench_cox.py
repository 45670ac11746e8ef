"""Cox (Efron) and cox.zph at scale, against lifelines and R in the same run on the same data.

    python bench/bench_cox.py [--rows N] [--no-r]

Simulates N rows with 4 covariates (3 normal, 1 binary), exponential event times in days with
uniform censoring (many tied times), writes them once as CSV, then times: the registry's
``cox_ph`` and ``cox_zph``, lifelines' ``CoxPHFitter`` (Efron), and R's ``coxph`` and ``cox.zph``
(``Rscript``, when installed; R reads the same CSV and times only the fit). Prints seconds, the
coefficients of each (they must agree) and the ratios to R. Not a test: figures go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.statistics.cox import cox_ph, cox_zph

R_CODE = """
suppressMessages(library(survival))
d <- read.csv("{csv}")
t0 <- proc.time()[["elapsed"]]
fit <- coxph(Surv(time, event) ~ a + b + c + d, data = d, ties = "efron")
t1 <- proc.time()[["elapsed"]]
z <- cox.zph(fit)
t2 <- proc.time()[["elapsed"]]
cat(t1 - t0, t2 - t1, coef(fit), "\\n")
"""


def simulate(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    x[:, 3] = (x[:, 3] > 0).astype(float)
    lp = x @ np.array([0.3, -0.2, 0.1, 0.5])
    t = np.ceil(rng.exponential(1 / np.exp(lp)) * 365)
    c = np.ceil(rng.uniform(0, 3 * 365, rows))
    df = pd.DataFrame(x, columns=list("abcd"))
    df["time"] = np.minimum(t, c)
    df["event"] = (t <= c).astype(int)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--no-r", action="store_true", help="skip R even where Rscript is installed")
    args = ap.parse_args()
    df = simulate(args.rows)
    terms = {k: [k] for k in "abcd"}
    print(f"{args.rows:,} rows, {int(df['event'].sum()):,} events, {df['time'].nunique():,} distinct times")
    t0 = time.perf_counter()
    fit = cox_ph(df, "time", "event", terms)
    t1 = time.perf_counter()
    cox_zph(fit)
    t2 = time.perf_counter()
    ours = (t1 - t0, t2 - t1)
    coef = [round(r.coef, 5) for r in fit.rows]
    print(f"registry   coxph {ours[0]:7.2f} s   cox.zph {ours[1]:7.2f} s   coef {coef}")
    from lifelines import CoxPHFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        cph = CoxPHFitter().fit(df, "time", "event")
        t1 = time.perf_counter()
    print(
        f"lifelines  coxph {t1 - t0:7.2f} s                       coef {[round(v, 5) for v in cph.params_]}"
    )
    if args.no_r or shutil.which("Rscript") is None:
        print("R: not run (no Rscript on this machine, or --no-r)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "cox.csv"
        df.to_csv(csv_path, index=False)
        out = subprocess.run(
            ["Rscript", "-e", R_CODE.format(csv=csv_path)], capture_output=True, text=True, check=True
        ).stdout.split()
    r_fit, r_zph = float(out[0]), float(out[1])
    r_coef = [round(float(v), 5) for v in out[2:]]
    print(f"R          coxph {r_fit:7.2f} s   cox.zph {r_zph:7.2f} s   coef {r_coef}")
    print(f"ratio to R: coxph {ours[0] / r_fit:.2f}x, cox.zph {ours[1] / r_zph:.2f}x (target: at most 2x)")


if __name__ == "__main__":
    main()
