"""The `churn` command: generate, validate, features, train, score, serve, demo, import.

Every command takes its settings from :mod:`churn.settings` (environment ``CHURN_*``), with the
flags given here on top. Mistakes a user can fix end in a one-paragraph message and exit code 2,
never a traceback.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

# Set before the libraries below load: they read these once (OpenMP when LightGBM loads, MLflow and
# BentoML when they start). The CLI is the entry point, so this is where they are set.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # LightGBM threads must not spin on a busy machine
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

import pandas as pd
import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from churn.backtest_cli import backtest_command
from churn.importer_cli import import_command
from churn.output import RedactingConsole, redact_everything
from churn.settings import load_settings
from features.dataset import DataError, default_quarantine_dir, open_dataset, read_raw_frames, validate_frames, write_dataset
from features.labels import build_training_set
from features.registry import FEATURES
from features.sample_data import iter_sample_chunks
from features.snapshot import build_snapshot
from serving.batch import score_all
from serving.outcomes import outcomes as run_outcomes
from serving.playbook import PlaybookError
from serving.runtime import StartupError
from serving.server import serve as run_server
from serving.tables import ScoringError
from training.tracking import candidates_table
from training.train import train as run_training

# library deprecation chatter is for us, not for the retention team
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*future.infer_string.*")

app = typer.Typer(
    name="churn",
    help="Churn prediction for trading companies: who is about to stop ordering, why, and what to do.\n\n"
    "Start with `churn demo`: sample data, features, a trained and registered model, a risk list.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _start() -> None:
    # every command: no password in a traceback or a log record (the consoles redact what they show)
    redact_everything()


console = RedactingConsole(stderr=True)
out = RedactingConsole(width=max(120, RedactingConsole().width))

DataOpt = Annotated[
    str | None,
    typer.Option("--data", "-d", help="CRM dataset: folder of CSV/Parquet, .duckdb file or postgresql:// URL [env CHURN_DATA; default data/crm.duckdb]."),
]
EngineOpt = Annotated[
    str | None,
    typer.Option("--engine", help="auto (DuckDB, or PostgreSQL for its URL) or spark: --data is then a folder of Parquet files or a Spark catalog database [env CHURN_ENGINE; default auto]."),
]
DayFirstOpt = Annotated[
    bool | None,
    typer.Option("--dayfirst/--monthfirst", help="Text dates like 03/04/2024 are day (or month) first [env CHURN_DAYFIRST; default: as each column's rows tell]."),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option("--encoding", help="Text encoding of a folder's CSV files, e.g. gbk or gb18030 for Chinese Windows exports [env CHURN_ENCODING; default UTF-8]."),
]
AsOfOpt = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date YYYY-MM-DD; nothing on or after it is read. Default: the day after the newest order."),
]


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn mistakes a user can fix into a clear message and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataError, ScoringError, PlaybookError, StartupError) as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(2) from None
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'} (flag or CHURN_{str(e['loc'][0]).upper() if e['loc'] else ''}): {e['msg']}, got {e.get('input')!r}"
                for e in err.errors()
            )
            console.print(f"[bold red]error in the settings:[/] {problems}", highlight=False)
            raise typer.Exit(2) from None
        except LookupError as err:
            console.print(f"[bold red]error:[/] {err.args[0] if err.args else err}", highlight=False)
            raise typer.Exit(2) from None
        except FileNotFoundError as err:
            console.print(f"[bold red]error:[/] file not found: {err.filename or err}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _as_date(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _settings(**overrides: Any):
    return load_settings(**overrides)


def _progress(description: str):
    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False)


@app.command()
@_user_errors
def generate(
    out_path: Annotated[str, typer.Option("--out", "-o", help="Target: a folder, a .duckdb file or a postgresql:// URL.")] = "data/crm.duckdb",
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 5000,
    years: Annotated[float, typer.Option(min=0.25, max=20, help="Years of history.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same data.")] = 42,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day of the history (default 2025-12-31).")] = None,
    file_format: Annotated[str, typer.Option("--format", help="For a folder: parquet or csv.")] = "parquet",
    lines: Annotated[bool, typer.Option("--lines/--no-lines", help="Also write the order lines (products and product groups of every order).")] = True,
) -> None:
    """Write a realistic sample CRM dataset of a trading company (customers, orders and their lines, complaints, invoices, contacts, customer history).

    Example: churn generate --customers 5000 --years 3 --seed 42 --out data/crm.duckdb
    """

    if file_format not in ("parquet", "csv"):
        raise DataError(f"--format must be parquet or csv, not {file_format!r}")
    kwargs: dict[str, Any] = {"customers": customers, "years": years, "seed": seed, "lines": lines}
    if end is not None:
        kwargs["end"] = end.date()
    started = time.perf_counter()
    chunks = iter_sample_chunks(**kwargs)
    counts = write_dataset(out_path, chunks, file_format=file_format)  # type: ignore[arg-type]
    table = Table(title=f"sample data written to {out_path} in {time.perf_counter() - started:.1f} s")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    out.print(table)


@app.command()
@_user_errors
def validate(
    data: DataOpt = None,
    on_error: Annotated[str, typer.Option("--on-error", help="fail (default) or quarantine: bad rows go to a file next to the data.")] = "fail",
    as_of: AsOfOpt = None,
    copy_to: Annotated[str | None, typer.Option("--copy-to", help="Write the good rows to this store (folder, .duckdb or URL).")] = None,
    dayfirst: DayFirstOpt = None,
    encoding: EncodingOpt = None,
    max_quarantined_share: Annotated[
        float | None, typer.Option("--max-quarantined-share", min=0.01, max=1.0, help="Stop when a table would lose more than this share of its rows to quarantine [env CHURN_MAX_QUARANTINED_SHARE; default 0.5].")
    ] = None,
) -> None:
    """Check a CRM dataset against the data contract; optionally quarantine bad rows and copy the good ones.

    Example: churn validate --data exports/ --on-error quarantine --copy-to data/crm.duckdb
    """

    if on_error not in ("fail", "quarantine"):
        raise DataError(f"--on-error must be fail or quarantine, not {on_error!r}")
    settings = _settings(data=data, dayfirst=dayfirst, encoding=encoding, max_quarantined_share=max_quarantined_share)
    location = settings.data
    frames = read_raw_frames(location, encoding=settings.encoding)
    clean, report = validate_frames(
        frames, as_of=_as_date(as_of), on_error=on_error, source=location, quarantine_dir=default_quarantine_dir(location), dayfirst=settings.dayfirst,  # type: ignore[arg-type]
        max_quarantined_share=settings.max_quarantined_share,
    )
    table = Table(title=f"CRM data at {location}")
    for col in ("table", "rows read", "loaded", "quarantined", "file"):
        table.add_column(col, justify="right" if col not in ("table", "file") else "left")
    for name, n in report.rows_read.items():
        q = n - report.rows_loaded[name]
        table.add_row(name, f"{n:,}", f"{report.rows_loaded[name]:,}", f"{q:,}", str(report.quarantine_files.get(name, "")))
    out.print(table)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    for p in report.problems:
        console.print(f"[yellow]quarantined:[/] {p}", highlight=False)
    if copy_to:
        counts = write_dataset(copy_to, clean)
        out.print(f"good rows written to {copy_to}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command()
@_user_errors
def features(
    data: DataOpt = None,
    as_of: AsOfOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Output file, .parquet or .csv.")] = None,
    training_set: Annotated[bool, typer.Option("--training-set", help="Stack labelled snapshots over the history instead of one snapshot.")] = False,
    horizon: Annotated[int | None, typer.Option(help="Churn horizon in days (for --training-set).")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="fail or quarantine bad input rows.")] = "fail",
    dayfirst: DayFirstOpt = None,
    encoding: EncodingOpt = None,
    engine: EngineOpt = None,
) -> None:
    """Build the point-in-time customer snapshot (or the labelled training set) and write it to a file.

    Example: churn features --data data/crm.duckdb --as-of 2025-07-01 --out snapshot.parquet
    """

    settings = _settings(data=data, horizon_days=horizon, dayfirst=dayfirst, encoding=encoding, engine=engine)
    if out_file is not None and out_file.suffix not in (".parquet", ".csv"):
        raise DataError(f"--out must end in .parquet or .csv, not {out_file.name}")
    # rows on or after --as-of are neither read nor validated: the engine's query leaves them out
    ds = open_dataset(settings.data, on_error=on_error, cut_at=_as_date(as_of), dayfirst=settings.dayfirst, encoding=settings.encoding, max_quarantined_share=settings.max_quarantined_share, engine=settings.engine)  # type: ignore[arg-type]
    started = time.perf_counter()
    if training_set:
        with _progress("snapshots") as bar:
            task = bar.add_task("snapshots", total=None)

            def step(i: int, n: int, when: date) -> None:
                bar.update(task, total=n, completed=i, description=str(when))

            frame = build_training_set(ds, horizon_days=settings.horizon_days, as_of=_as_date(as_of), active_days=settings.active_days, progress=step)
    else:
        when = _as_date(as_of) or ds.end_date()
        with console.status(f"snapshot as of {when}"):
            frame = build_snapshot(ds, when, active_days=settings.active_days)
    elapsed = time.perf_counter() - started
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out_file, index=False) if out_file.suffix == ".parquet" else frame.to_csv(out_file, index=False)
    feats = [c for c in frame.columns if c in FEATURES]
    table = Table(title=f"{len(frame):,} rows, {len(feats)} features in {elapsed:.1f} s" + (f" -> {out_file}" if out_file else ""))
    table.add_column("group")
    table.add_column("features", justify="right")
    table.add_column("missing", justify="right")
    groups: dict[str, list[str]] = {}
    for c in feats:
        groups.setdefault(FEATURES[c].group, []).append(c)
    for group, cols in groups.items():
        share = float(frame[cols].isna().to_numpy().mean()) if len(frame) else 0.0
        table.add_row(group, str(len(cols)), f"{share:.1%}")
    out.print(table)
    if "churned" in frame.columns and len(frame):
        out.print(f"churn share {frame['churned'].mean():.1%} over {frame['as_of'].nunique()} as-of dates")


@app.command()
@_user_errors
def train(
    data: DataOpt = None,
    horizon: Annotated[int | None, typer.Option(help="Churn horizon in days (default 90).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trial budget.")] = 20,
    timeout: Annotated[int, typer.Option(min=10, help="Optuna time budget in seconds.")] = 300,
    as_of: AsOfOpt = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="fail or quarantine bad input rows.")] = "fail",
    dayfirst: DayFirstOpt = None,
    encoding: EncodingOpt = None,
    engine: EngineOpt = None,
) -> None:
    """Train, evaluate against baselines on a later period, calibrate, track and register a model.

    Example: churn train --data data/crm.duckdb --trials 20 --as-of 2025-10-01
    """

    settings = _settings(data=data, horizon_days=horizon, seed=seed, dayfirst=dayfirst, encoding=encoding, engine=engine)
    # rows on or after --as-of are neither read nor validated: the engine's query leaves them out
    ds = open_dataset(settings.data, on_error=on_error, cut_at=_as_date(as_of), dayfirst=settings.dayfirst, encoding=settings.encoding, max_quarantined_share=settings.max_quarantined_share, engine=settings.engine)  # type: ignore[arg-type]
    try:
        with console.status("training") as status:
            result = run_training(
                ds,
                progress=lambda msg: status.update(f"training: {msg}"),
                horizon_days=settings.horizon_days,
                trials=trials,
                timeout_s=timeout,
                as_of=_as_date(as_of),
                seed=settings.seed,
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.artifact_root,
                model_name=settings.model_name,
                stage_rule=settings.stage_rule(),
            )
    finally:
        ds.close()
    _print_training(result, settings)


def _print_training(result: Any, settings: Any) -> None:
    fitted = result.fitted
    candidates = Table(title="candidates on the validation period (the best one is served, a baseline too)")
    for col in ("candidate", "ROC-AUC", "PR-AUC", "score", ""):
        candidates.add_column(col, justify="left" if col in ("candidate", "") else "right")
    for _, r in candidates_table(fitted).iterrows():
        candidates.add_row(r["candidate"], f"{r['roc_auc']:.3f}", f"{r['pr_auc']:.3f}", f"{r['score']:.3f}", "chosen" if r["chosen"] else "")
    out.print(candidates)
    overlap = ", label windows overlapping: optimistic" if fitted.split.short else ""
    table = Table(title=f"test period {fitted.split.summary()['test_first']} to {fitted.split.summary()['test_last']} (later than training{overlap})")
    for col in ("method", "subset", "ROC-AUC", "PR-AUC", "Brier", "lift@10%", "ROC margin (95%)"):
        table.add_column(col, justify="left" if col in ("method", "subset") else "right")
    for _, r in fitted.comparison.iterrows():
        margin = "" if pd.isna(r.get("margin_roc_auc", float("nan"))) else f"{r['margin_roc_auc']:+.3f} ({r['margin_roc_auc_low']:+.3f}, {r['margin_roc_auc_high']:+.3f})"
        name = f"model: {result.model.kind}" if r["method"] == "model" else r["method"]
        table.add_row(name, r["subset"], f"{r['roc_auc']:.3f}", f"{r['pr_auc']:.3f}", f"{r['brier']:.3f}", f"{r['lift_top10']:.2f}", margin)
    out.print(table)
    meta = result.model.metadata
    out.print(f"served: {meta['recipe']}, refitted on snapshots {meta['train_first']} to {meta['train_last']} (tested version trained to {meta['tested_train_last']})")
    status = "[green]champion[/]" if result.promoted else "[yellow]challenger[/]"
    out.print(f"model {settings.model_name} version {result.version} is {status}: {result.reason}")
    if result.groups is not None:
        _print_groups(result.groups)
    out.print(f"MLflow run {result.run_id} in {settings.tracking_uri}")


def _print_groups(groups: Any) -> None:
    periods = groups.periods
    table = Table(title=f"partial churn (a product group a customer buys regularly stops), test date {periods['test_max']}; served: {groups.chosen}")
    for col in ("method", "rows", "stop rate", "ROC-AUC", "PR-AUC"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for _, r in groups.comparison.iterrows():
        subset = "" if r["subset"] == "all" else " (customers who kept ordering)"
        table.add_row(f"{r['method']}{subset}", f"{r['rows']:,}", f"{r['stop_rate']:.3f}", f"{r['roc_auc']:.3f}", f"{r['pr_auc']:.3f}")
    out.print(table)


@app.command()
@_user_errors
def score(
    data: DataOpt = None,
    as_of: AsOfOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the risk list to this .csv or .parquet file.")] = None,
    holdout: Annotated[
        float | None,
        typer.Option(help="Share of each risk band held out as control (no action this cycle), seeded; 0 = none [env CHURN_HOLDOUT; default 0]."),
    ] = None,
    engine: EngineOpt = None,
) -> None:
    """Score every active customer with the champion model and store the risk list (history kept).

    Example: churn score --data data/crm.duckdb --holdout 0.1 --out risk_list.csv
    """

    settings = _settings(data=data, holdout=holdout, engine=engine)
    started = time.perf_counter()
    frame = score_all(settings, as_of=_as_date(as_of), out=out_file)
    _print_risk_list(frame, f"{len(frame):,} customers scored in {time.perf_counter() - started:.1f} s")


@app.command()
@_user_errors
def outcomes(data: DataOpt = None) -> None:
    """What happened after every scoring run whose horizon has passed: calibration, realised ROC-AUC and PR-AUC, treated vs control retention, drift.

    Example: churn outcomes --data data/crm.duckdb
    """

    settings = _settings(data=data)
    reports = run_outcomes(settings)
    if not reports:
        out.print(f"no scoring run in {settings.data} whose {settings.horizon_days}-day horizon has passed yet: `churn score` first, then wait for the horizon")
        return
    for report in reports:
        _print_outcome(report)
    out.print(f"figures stored in the run_outcomes table of {settings.data} (the page's Outcomes tab) and logged to MLflow as outcome_* metrics")


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"


def _print_outcome(report: dict[str, Any]) -> None:
    auc = "–" if report["roc_auc"] is None else f"{report['roc_auc']:.3f}"
    pr = "–" if report["pr_auc"] is None else f"{report['pr_auc']:.3f}"
    test = report.get("test_pr_auc")
    out.print(
        f"\n[bold]run of {report['as_of']}[/] (model {report['model_name']} version {report['model_version']}, horizon to {report['horizon_end']}): "
        f"{report['customers']:,} customers, churn predicted {_pct(report['predicted_churn_rate'])}, realised {_pct(report['churn_rate'])}; "
        f"ROC-AUC {auc}, PR-AUC {pr}" + (f" (test period {test:.3f})" if test is not None else "")
        + (f"; as if no action had been taken (control, weighted for its band, and low band): ROC-AUC {report['untreated_roc_auc']:.3f}, PR-AUC {report['untreated_pr_auc']:.3f}" if report.get("untreated_pr_auc") is not None else "")
    )
    table = Table(title="realised churn against predicted")
    for col in ("group", "customers", "predicted", "realised"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in report["bands"]:
        table.add_row(f"band {row['risk_band']}", f"{row['customers']:,}", _pct(row["predicted"]), _pct(row["realised"]))
    for row in report["deciles"]:
        table.add_row(f"decile {row['decile']}", f"{row['customers']:,}", _pct(row["predicted"]), _pct(row["realised"]))
    out.print(table)
    effects = report.get("effects")
    if effects and effects.get("overall"):
        table = Table(title=f"retention of at-risk customers, treated vs control (touched: treated {_pct(effects['touched_treated'])}, control {_pct(effects['touched_control'])})")
        for col in ("group", "treated", "control", "treated kept", "control kept", "uplift (95% interval)"):
            table.add_column(col, justify="left" if col == "group" else "right")
        rows = [("all at-risk", effects["overall"])] + [(f"action {k}", v) for k, v in effects["per_action"].items()] + [(f"driver {k}", v) for k, v in effects["per_driver"].items()]
        for name, c in rows:
            table.add_row(name, f"{c['treated']:,}", f"{c['control']:,}", _pct(c["treated_retention"]), _pct(c["control_retention"]), f"{c['uplift']:+.1%} ({c['low']:+.1%}, {c['high']:+.1%})")
        out.print(table)
    else:
        out.print("no control group in this run (`churn score --holdout 0.1` holds one out): the effect of the actions cannot be measured")
    drift = report.get("drift") or []
    if drift:
        out.print("drift (PSI against the training reference): " + ", ".join(f"{d['feature'].replace('__score__', 'scores')} {d['psi']:.2f}" for d in drift[:5]))
    for reason in report.get("retrain") or []:
        out.print(f"[bold red]retrain recommended:[/] {reason}", highlight=False)


def _shown(value: Any, missing: str) -> str:
    return missing if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _print_risk_list(frame: Any, title: str, rows: int = 10) -> None:
    table = Table(title=title, expand=False)
    table.add_column("customer")
    table.add_column("risk", justify="right")
    table.add_column("band")
    table.add_column("class")
    table.add_column("stage")
    table.add_column("value at risk", justify="right")
    table.add_column("why, and the first action", overflow="ellipsis", no_wrap=False, max_width=70)
    for _, r in frame.head(rows).iterrows():
        table.add_row(
            str(r["customer_id"]),
            f"{r['churn_probability']:.0%}",
            str(r["risk_band"]),
            f"{r['tier']} / {r['pyramid']}",
            str(r["stage"]).replace("_", " ") + (" (let go?)" if r["let_go"] else "") + (" (control)" if r.get("control") else ""),
            f"{r['value_at_risk']:,.0f}",
            f"{_shown(r['top_reason'], '')}\n[dim]-> {_shown(r['first_action'], 'no action at this risk level')}[/]",
        )
    out.print(table)


@app.command()
@_user_errors
def serve(
    data: DataOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes (each holds the model and the snapshot).")] = 1,
) -> None:
    """Start the BentoML service (API, risk list and the retention team's page at /ui).

    Example: CHURN_API_KEY=secret churn serve --data data/crm.duckdb --port 3000
    """

    settings = _settings(data=data)
    raise typer.Exit(run_server(settings, port=port, host=host, workers=workers, poll_seconds=settings.model_poll_seconds))


@app.command()
@_user_errors
def demo(
    customers: Annotated[int, typer.Option(min=200, help="Customers in the sample data.")] = 5000,
    years: Annotated[float, typer.Option(help="Years of history.")] = 3.0,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trial budget.")] = 15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    fresh: Annotated[bool, typer.Option(help="Regenerate the sample data even if it exists.")] = False,
) -> None:
    """The whole job on sample data: generate, build features, train, register, score, and say where it all is.

    Example: churn demo
    """

    settings = _settings()
    data_path = Path(settings.data)
    started = time.perf_counter()
    if fresh or not (data_path.exists() if "://" not in settings.data else False):
        with console.status(f"generating {customers:,} customers over {years:g} years"):
            counts = write_dataset(settings.data, iter_sample_chunks(customers=customers, years=years, seed=seed))
        out.print(f"1. sample data: {settings.data} (" + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ")")
    else:
        out.print(f"1. sample data: {settings.data} (reused; --fresh to regenerate)")
    ds = open_dataset(settings.data, as_of=date.today())
    out.print(f"2. training on snapshots up to {ds.end_date()} (features computed in DuckDB), {trials} Optuna trials")
    with console.status("training") as status:
        result = run_training(
            ds,
            horizon_days=settings.horizon_days,
            trials=trials,
            timeout_s=600,
            seed=seed,
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.artifact_root,
            model_name=settings.model_name,
            stage_rule=settings.stage_rule(),
            progress=lambda msg: status.update(f"training: {msg}"),
        )
    _print_training(result, settings)
    ds.close()
    risk_file = data_path.parent / "risk_list.csv"
    frame = score_all(settings, out=risk_file)
    keep = frame[(frame["stage"] == "retain") & (frame["risk_band"] != "low")]
    quiet = frame[frame["stage"] == "win_back"]
    _print_risk_list(
        keep, f"3. risk list: {len(frame):,} active customers scored; at risk (high or medium band), still buying ({len(keep):,}): top 10 by value at risk"
    )
    _print_risk_list(quiet, f"   win back, gone quiet ({len(quiet):,}): top 5 by value worth recovering", rows=5)
    out.print(
        f"\nDone in {time.perf_counter() - started:.0f} s.\n"
        f"  data:          {settings.data}\n"
        f"  risk list:     {risk_file} (and table risk_scores in the store)\n"
        f"  groups:        {risk_file.with_name('risk_list_groups.csv')} (product groups at risk; table group_risk_scores)\n"
        f"  MLflow:        .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000\n"
        f"  model:         models:/{settings.model_name}@champion\n"
        f"  service+page:  CHURN_API_KEY=change-me .venv/bin/churn serve  ->  http://127.0.0.1:3000/ui"
    )


app.command("import")(_user_errors(import_command))
app.command("backtest")(_user_errors(backtest_command))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
