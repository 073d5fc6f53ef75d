"""The closed loop on the sample company, end to end, with the generator's truth beside the measured effect.

Generates the company, trains as of T (nothing on or after T read), scores at T with a 10% control
group, records the first planned action of every treated at-risk customer (as POST /actions would),
lets the simulated retention program run from T, and runs `churn outcomes` on the months after:

    .venv/bin/python benchmarks/retention_loop.py [--customers 2000] [--effect 0.5] [--out /tmp/loop]

Prints the outcomes report and the true effect on the treated (with minus without the program).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import time
from pathlib import Path

from typer.testing import CliRunner

from churn.cli import app
from churn.settings import load_settings
from features.dataset import open_dataset, write_dataset
from features.sample_data import generate_sample
from features.sample_program import RetentionProgram, generate_with_program
from serving.actions import ActionDone, record_action
from serving.batch import score_all
from serving.tables import read_run
from training.train import train

AS_OF = datetime.date(2025, 9, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--effect", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("/tmp/churn-retention-loop"))
    args = parser.parse_args()
    started = time.perf_counter()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    data = args.out / "crm.duckdb"
    tracking_uri = f"sqlite:///{args.out / 'mlflow.db'}"
    write_dataset(data, generate_sample(args.customers, years=3.0, seed=args.seed))
    cut = open_dataset(data, cut_at=AS_OF)
    try:
        train(cut, trials=5, timeout_s=120, as_of=AS_OF, tracking_uri=tracking_uri, artifact_root=str(args.out / "artifacts"), model_name="churn", seed=args.seed)
    finally:
        cut.close()
    settings = load_settings(data=str(data), tracking_uri=tracking_uri, model_name="churn", holdout=0.1, seed=args.seed)
    score_all(settings, as_of=AS_OF, explain_top=200)
    run = read_run(data)
    assert run is not None
    treated = run[run["risk_band"].isin(["high", "medium"]) & ~run["control"]]
    done = {}
    for i, row in enumerate(treated.itertuples(index=False)):
        key = json.loads(str(row.actions_json))[0]["key"]
        day = AS_OF + datetime.timedelta(days=i % 14)
        record_action(data, ActionDone(id=f"crm-{i}", customer_id=str(row.customer_id), action=key, owner="account manager", done_at=datetime.datetime.combine(day, datetime.time(10)), outcome="reached"))
        done[str(row.customer_id)] = (key, day)
    tables, truth = generate_with_program(args.customers, RetentionProgram(AS_OF, done, {}, default_effect=args.effect, seed=1), years=3.0, seed=args.seed)
    write_dataset(data, tables)
    result = CliRunner().invoke(app, ["outcomes", "--data", str(data)], env={"CHURN_TRACKING_URI": tracking_uri, "CHURN_MODEL_NAME": "churn"})
    print(result.output)
    mine = truth.set_index("customer_id").loc[list(done)]
    lift = (mine["ordered_with_program"].astype(int) - mine["ordered_without_program"].astype(int)).mean()
    print(f"truth: {len(mine):,} treated at-risk customers, effect {args.effect:g} on their hazard of loss; "
          f"retention with the program {mine['ordered_with_program'].mean():.1%}, without {mine['ordered_without_program'].mean():.1%}: "
          f"true effect {lift:+.1%}  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
