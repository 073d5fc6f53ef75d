"""`churn backtest`: train as of each date, score, and compare with what happened.

Registered by :mod:`churn.cli` as ``app.command("backtest")(backtest_command)``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from churn.output import RedactingConsole
from churn.settings import load_settings
from features.dataset import DataError, open_dataset
from training.backtest import BacktestConfig, BacktestResult, run_backtest
from training.tracking import log_backtest

_err = RedactingConsole(stderr=True)
_out = RedactingConsole(width=140)


def backtest_command(
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First as-of date YYYY-MM-DD.")],
    end: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last as-of date YYYY-MM-DD (its outcome must be in the data).")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="CRM dataset: folder, .duckdb file or postgresql:// URL [env CHURN_DATA].")] = None,
    every: Annotated[str, typer.Option("--every", help="Step between as-of dates: 1M (months), 2W (weeks), 14D (days).")] = "1M",
    horizon: Annotated[int | None, typer.Option("--horizon", help="Churn horizon in days (default 90).")] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Optuna trials per training.")] = 10,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table to this .csv file.")] = None,
    scores_file: Annotated[Path | None, typer.Option("--scores", help="Also write every customer's scores and outcome to this .csv file.")] = None,
    ablate: Annotated[list[str] | None, typer.Option("--ablate", help="Also train without these features or feature groups, comma-separated (repeatable: one variant each).")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="fail or quarantine bad input rows.")] = "fail",
    engine: Annotated[str | None, typer.Option("--engine", help="auto or spark (--data a folder of Parquet files) [env CHURN_ENGINE].")] = None,
) -> None:
    """Train as of each date (nothing on or after it is read), score, and measure against what happened.

    Example: churn backtest --data data/retail.duckdb --from 2011-04-01 --to 2011-09-01 --every 1M --out backtest.csv
    """
    settings = load_settings(data=data, horizon_days=horizon, seed=seed, engine=engine)
    config = BacktestConfig(
        start=start.date(), end=end.date(), every=every, horizon_days=settings.horizon_days, active_days=settings.active_days,
        trials=trials, seed=settings.seed, ablate=tuple(ablate or ()), stage_rule=settings.stage_rule(), risk_high=settings.risk_high,
    )
    for flag, path in (("--out", out_file), ("--scores", scores_file)):
        if path is not None and path.suffix != ".csv":
            raise DataError(f"{flag} must end in .csv, not {path.name}")

    def open_at(t: date):
        return open_dataset(settings.data, on_error=on_error, cut_at=t, dayfirst=settings.dayfirst, encoding=settings.encoding, max_quarantined_share=settings.max_quarantined_share, engine=settings.engine)  # type: ignore[arg-type]

    outcomes = open_dataset(settings.data, on_error=on_error, dayfirst=settings.dayfirst, encoding=settings.encoding, max_quarantined_share=settings.max_quarantined_share, engine=settings.engine)  # type: ignore[arg-type]
    try:
        with _err.status("backtest") as status:
            result = run_backtest(open_at, outcomes, config, progress=lambda msg: status.update(f"backtest: {msg}"))
        name = outcomes.name()
    finally:
        outcomes.close()
    ablation_file = out_file.with_name(f"{out_file.stem}_ablation.csv") if out_file is not None and not result.ablation.empty else None
    for path, frame in ((out_file, result.table), (scores_file, result.scores), (ablation_file, result.ablation)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
    _print(result)
    run_id = log_backtest(result, config, dataset_name=name, tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root)
    _out.print(f"MLflow run {run_id} (experiment churn-backtest/{name}) in {settings.tracking_uri}" + (f"; table written to {out_file}" if out_file else ""))


def _print(result: BacktestResult) -> None:
    table = Table(title=f"backtest: {result.table['as_of'].nunique()} as-of dates in {result.seconds:.0f} s")
    for col in ("as of", "subset", "method", "customers", "churn", "ROC-AUC", "PR-AUC", "Brier", "lift@10%", "ROC margin (95%)"):
        table.add_column(col, justify="left" if col in ("as of", "subset", "method") else "right")
    for _, r in result.table.iterrows():
        margin = "" if pd.isna(r.get("margin_roc_auc")) else f"{r['margin_roc_auc']:+.3f} ({r['margin_roc_auc_low']:+.3f}, {r['margin_roc_auc_high']:+.3f})"
        method = f"model: {r['chosen']}" if r["method"] == "model" else r["method"]
        table.add_row(
            r["as_of"], r["subset"], method, f"{r['customers']:,}", f"{r['churn_rate']:.3f}", f"{r['roc_auc']:.3f}", f"{r['pr_auc']:.3f}",
            f"{r['brier']:.3f}", f"{r['lift_top10']:.2f}", margin,
        )
    _out.print(table)
    summary = Table(title="the model's mean margin over the best baseline, all dates (95% interval)")
    for col in ("subset", "metric", "dates won", "mean margin", "interval"):
        summary.add_column(col)
    for _, r in result.summary.iterrows():
        summary.add_row(r["subset"], r["metric"], f"{r['wins']}/{r['dates']}", f"{r['mean_margin']:+.4f}", f"{r['low']:+.4f} to {r['high']:+.4f}")
    _out.print(summary)
    if not result.ablation.empty:
        figures = [c for c in result.ablation.columns if c.endswith(("_roc_auc", "_pr_auc"))]
        _out.print("ablation (the model per date and variant):")
        _out.print(result.ablation.set_index(["as_of", "variant"])[figures].round(4).to_string())
        _out.print("ablation (the model's mean over the dates):")
        _out.print(result.ablation.groupby("variant", sort=False)[figures].mean().round(4).to_string())
    if not result.lead_times.empty:
        lead = Table(title=f"lead time: days from the first warning to a lost customer's last order ({int(result.lead_times['lost'].iloc[0]):,} lost customers on a retain list)")
        for col in ("list", "method", "flagged", "median lead (days)", "quartiles", "precision", "customer-dates flagged"):
            lead.add_column(col, justify="left" if col in ("list", "method") else "right")
        for _, r in result.lead_times.iterrows():
            lead.add_row(
                r["list"], r["method"], f"{r['flagged']:.0%}", f"{r['median_lead_days']:.0f}", f"{r['q25_lead_days']:.0f} to {r['q75_lead_days']:.0f}",
                f"{r['precision']:.0%}", f"{r['flags']:,}",
            )
        _out.print(lead)
    for note in result.notes:
        _out.print(f"note: {note}", highlight=False)
