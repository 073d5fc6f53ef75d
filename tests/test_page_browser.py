"""The retention team's page in a real browser: headless Chromium against the real service process.

Signs in with the API key, filters the risk list to ABC class A, exports the CSV of what is shown,
opens a customer and checks that the reasons and actions on screen are those of ``POST /predict``,
then checks that the overview charts render. Screenshots go to ``test-output/page/`` (ignored by
git). ``CHURN_DOCS_SCREENSHOT=1`` also refreshes the README's screenshot ``docs/page.png``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from serving_fixtures import API_KEY, ServiceProcess, TrainedStore, service_env, trained_store

from churn.settings import load_settings
from serving.batch import score_all
from serving.outcomes import outcomes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "page"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}


def _chromium() -> str:
    """Debian's Chromium; missing fails in CI (where `make test` installs it) and skips elsewhere."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        message = "Chromium is missing: `make browser` (or `apt-get install chromium`) installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(tmp_path_factory.mktemp("serving_store"))


@pytest.fixture(scope="module")
def own_store(store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return store.copy(tmp_path_factory.mktemp("page_data"))


@pytest.fixture(scope="module")
def service(own_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(service_env(own_store), tmp_path_factory.mktemp("page_log") / "service.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def output() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture()
def page(browser, service: ServiceProcess) -> Iterator[object]:
    """A fresh tab at laptop size that records page errors and any request leaving the service."""
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True, locale="en-US")
    tab = context.new_page()
    tab.problems = []
    tab.on("pageerror", lambda err: tab.problems.append(f"page error: {err}"))
    tab.on("console", lambda msg: tab.problems.append(f"console error: {msg.text}") if msg.type == "error" else None)
    tab.on("request", lambda req: None if req.url.startswith((service.url, "blob:", "data:")) else tab.problems.append(f"external request: {req.url}"))
    try:
        yield tab
    finally:
        context.close()


def _api(service: ServiceProcess, verb: str, body: dict) -> dict:
    answer = httpx.post(f"{service.url}/{verb}", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    answer.raise_for_status()
    return answer.json()


def _sign_in(page, service: ServiceProcess, key: str = API_KEY) -> None:
    page.goto(f"{service.url}/ui")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _shown_rows(page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#risk-table tbody tr[data-customer-id]",
        """rows => rows.map(r => ({
            customer_id: r.dataset.customerId,
            cells: Array.from(r.querySelectorAll('td')).map(td => td.innerText.trim()),
        }))""",
    )


def test_page_shell_is_public_and_its_data_needs_the_key(service: ServiceProcess) -> None:
    assert httpx.get(f"{service.url}/ui", follow_redirects=True).status_code == 200
    assert "Churn radar" in httpx.get(f"{service.url}/ui/").text
    assert httpx.get(f"{service.url}/ui/static/vendor/chart.umd.min.js").status_code == 200
    for path in ("/ui/api/model", "/ui/api/overview", "/ui/api/customers/C000001"):
        assert httpx.get(f"{service.url}{path}").status_code == 401
        assert httpx.get(f"{service.url}{path}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    model = httpx.get(f"{service.url}/ui/api/model", headers={"X-API-Key": API_KEY}).json()
    assert model["alias"] == "champion" and model["version"] and model["test_pr_auc"] is not None


def test_wrong_key_is_refused_and_kept_nowhere(page, service: ServiceProcess) -> None:
    _sign_in(page, service, key="not-the-key")
    page.get_by_text("That API key was not accepted.").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.locator("#view-list").is_hidden()
    assert not page.problems or all("401" in p for p in page.problems), page.problems


def test_risk_list_tier_a_csv_and_customer_match_predict(page, service: ServiceProcess, output: Path) -> None:
    _sign_in(page, service)
    page.wait_for_selector("#risk-table tbody tr[data-customer-id]")
    assert page.evaluate("sessionStorage.getItem('churn.apiKey')") == API_KEY
    footer = page.locator("#model-info")
    footer.get_by_text("@champion").wait_for()
    assert "test-period PR-AUC" in footer.inner_text()

    # filter to class A: the page shows exactly the service's ranked list for tier A
    page.get_by_label("ABC class", exact=True).select_option("A")
    page.get_by_text("(tier A)").wait_for()
    expected = _api(service, "risk_list", {"tier": ["A"], "stage": ["retain"], "limit": 50, "offset": 0, "explain": False})
    shown = _shown_rows(page)
    assert [r["customer_id"] for r in shown] == [i["customer_id"] for i in expected["items"]]
    assert shown and all(r["cells"][2].startswith("A ·") for r in shown)
    assert f"of {expected['total']:,}" in page.locator("#page-info").inner_text()
    page.screenshot(path=output / "risk_list_tier_a.png")
    if os.environ.get("CHURN_DOCS_SCREENSHOT") == "1":
        page.screenshot(path=ROOT / "docs" / "page.png", type="png")

    # CSV export of what is shown: same customers, same order, same figures
    with page.expect_download() as info:
        page.get_by_role("button", name="Export CSV").click()
    download = info.value
    saved = output / download.suggested_filename
    download.save_as(saved)
    assert saved.name.startswith("risk_list_retain_tier-A_")
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in shown]
    for row, seen in zip(rows, shown, strict=True):
        assert row["tier"] == "A" and row["stage"] == "retain"
        assert f"{float(row['churn_probability']):.1%}" == seen["cells"][5]
        assert row["risk_band"] == seen["cells"][6]
        assert row["rank"] == seen["cells"][0]

    # one customer: reasons and actions are those of POST /predict, word for word
    first = shown[0]["customer_id"]
    page.locator(f'#risk-table tr[data-customer-id="{first}"] a.customer-link').click()
    page.wait_for_selector("#reasons li")
    page.wait_for_selector("#orders tbody tr td")
    answer = _api(service, "predict", {"customers": [{"customer_id": first}]})["results"][0]
    assert answer["status"] == "ok"
    reasons = page.locator("#reasons .reason-text").all_inner_texts()
    assert reasons == [r["sentence"] for r in answer["reasons"]]
    assert reasons, "a customer at the top of class A has reasons"
    actions = page.locator("#actions .action-text").all_inner_texts()
    owners = page.locator("#actions td.owner").all_inner_texts()
    deadlines = page.locator("#actions td.deadline").all_inner_texts()
    assert actions == [a["action"] for a in answer["actions"]]
    assert owners == [a["owner"].replace("_", " ") for a in answer["actions"]]
    assert all(a["due_by"] in d for a, d in zip(answer["actions"], deadlines, strict=True))
    assert f"{answer['churn_probability']:.1%}" in page.locator("#customer-kpis").inner_text()
    assert page.locator("#orders tbody tr").count() >= 1
    groups = page.locator("#groups tbody tr").all_inner_texts()
    assert answer["groups_at_risk"], "a key account of the sample company buys product groups regularly"
    assert [g.split("\t")[0] for g in groups] == [g["product_group"] for g in answer["groups_at_risk"]]
    assert f"{answer['groups_at_risk'][0]['probability']:.1%}" in groups[0]
    page.screenshot(path=output / "customer.png", full_page=True)
    assert not page.problems, page.problems


def test_the_done_form_records_the_action_once(page, service: ServiceProcess, own_store: TrainedStore, output: Path) -> None:
    from serving.actions import read_actions

    at_risk = _api(service, "risk_list", {"risk_band": ["high"], "stage": ["retain"], "limit": 1})["items"][0]
    _sign_in(page, service)
    page.wait_for_selector("#risk-table tbody tr[data-customer-id]")
    page.goto(f"{service.url}/ui/#/customer/{at_risk['customer_id']}")
    form = page.locator("#done-form")
    form.wait_for()
    second = at_risk["actions"][-1]
    page.get_by_label("Action", exact=True).select_option(second["key"])
    page.get_by_label("Outcome of the talk").select_option("promised_order")
    page.get_by_label("Done by").fill("Anna Li")
    page.get_by_label("Note").fill("orders again next week")
    page.get_by_role("button", name="Done", exact=True).click()
    page.get_by_text(f"Recorded: {second['action']} (promised order).").wait_for()
    page.screenshot(path=output / "customer_done.png", full_page=True)
    stored = read_actions(str(own_store.data))
    mine = stored[stored["customer_id"] == at_risk["customer_id"]]
    assert mine[["action", "owner", "outcome", "note"]].values.tolist() == [[second["key"], "Anna Li", "promised_order", "orders again next week"]]
    assert page.evaluate("localStorage.getItem('churn.owner')") == "Anna Li"
    assert not page.problems, page.problems


def test_win_back_tab_lists_customers_gone_quiet_with_win_back_steps(page, service: ServiceProcess, output: Path) -> None:
    _sign_in(page, service)
    page.wait_for_selector("#risk-table tbody tr[data-customer-id]")
    page.get_by_role("tab", name="Win back: gone quiet").click()
    page.get_by_text("active customers gone quiet").wait_for()
    assert page.get_by_role("tab", name="Win back: gone quiet").get_attribute("aria-selected") == "true"
    expected = _api(service, "risk_list", {"stage": ["win_back"], "limit": 50, "offset": 0, "explain": False})
    shown = _shown_rows(page)
    assert expected["total"] > 0 and [r["customer_id"] for r in shown] == [i["customer_id"] for i in expected["items"]]
    let_go = [i["customer_id"] for i in expected["items"] if i["let_go"]]
    for row in shown:
        assert ("let-go candidate" in row["cells"][1]) == (row["customer_id"] in let_go)
    page.screenshot(path=output / "win_back.png")

    first = next(i for i in expected["items"] if i["risk_band"] in ("high", "medium"))["customer_id"]
    page.locator(f'#risk-table tr[data-customer-id="{first}"] a.customer-link').click()
    page.wait_for_selector("#actions tbody tr td.owner")
    answer = _api(service, "predict", {"customers": [{"customer_id": first}]})["results"][0]
    assert answer["stage"] == "win_back" and {a["driver"] for a in answer["actions"]} == {"win_back"}
    assert "gone quiet" in page.locator("#customer-kpis").inner_text()
    assert page.locator("#actions-title").inner_text() == "What to do (win-back steps)"
    assert page.locator("#actions .action-text").all_inner_texts() == [a["action"] for a in answer["actions"]]
    assert page.locator("#back-to-list").get_attribute("href") == "#/list/win_back"
    assert not page.problems, page.problems


def test_overview_charts_render(page, service: ServiceProcess, output: Path) -> None:
    _sign_in(page, service)
    page.wait_for_selector("#risk-table tbody tr[data-customer-id]")
    page.get_by_role("link", name="Overview").click()
    page.wait_for_selector("#rates-table tbody tr td.num")
    charts = page.evaluate(
        """ids => ids.map(id => {
            const chart = Chart.getChart(document.getElementById(id));
            const canvas = document.getElementById(id);
            return {
                id,
                datasets: chart ? chart.data.datasets.length : 0,
                points: chart ? chart.data.datasets.reduce((n, d) => n + d.data.filter(v => v !== null).length, 0) : 0,
                width: canvas.width,
                height: canvas.height,
            };
        })""",
        ["chart-churn", "chart-retention", "chart-bands", "chart-managers"],
    )
    for chart in charts:
        assert chart["datasets"] > 0 and chart["points"] > 0, chart
        assert chart["width"] > 200 and chart["height"] > 100, chart

    overview = httpx.get(f"{service.url}/ui/api/overview", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    latest = max(r["period_start"] for r in overview["churn_by_period"])
    everyone = next(r for r in overview["churn_by_period"] if r["period_start"] == latest and r["tier"] == "all")
    assert abs(everyone["churn_rate"] + everyone["retention_rate"] - 1) < 1e-9
    assert 0 < everyone["lost"] < everyone["active"]
    first_row = page.locator("#rates-table tbody tr").first.inner_text()
    assert everyone["period_label"] in first_row and f"{everyone['churn_rate']:.1%}" in first_row
    page.screenshot(path=output / "overview.png", full_page=True)
    assert not page.problems, page.problems


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(browser) -> None:
    source = (ROOT / "serving" / "page" / "static" / "app.js").read_text()
    start = source.index("  function csvCell(")
    function = source[start : source.index("\n  }\n", start) + 4]
    context = browser.new_context()
    try:
        tab = context.new_page()
        cells = ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "plain", "-12.50", -3.2, 0.41, None, 'say "hi", then']
        shown = tab.evaluate(f"(cells) => {{ {function}; return cells.map(csvCell); }}", cells)
    finally:
        context.close()
    assert shown == [
        "\"'=HYPERLINK(\"\"http://x\"\")\"", "'+1+2", "'-2+3", "'@SUM(A1)", "'\tx", "plain", "-12.50", "-3.2", "0.41", "", '"say ""hi"", then"',
    ]


def test_outcomes_tab_shows_the_report_with_its_plots(page, service: ServiceProcess, own_store: TrainedStore, output: Path) -> None:
    settings = load_settings(data=str(own_store.data), tracking_uri=own_store.tracking_uri, model_name=own_store.model_name, holdout=0.3)
    score_all(settings, as_of=date(2025, 9, 1), explain_top=10)
    (report,) = [r for r in outcomes(settings) if r["as_of"] == "2025-09-01"]
    _sign_in(page, service)
    page.wait_for_selector("#risk-table tbody tr[data-customer-id]")
    page.get_by_role("link", name="Outcomes").click()
    kpis = page.locator("#outcomes-kpis")
    kpis.get_by_text(f"{report['roc_auc']:.3f}").wait_for()
    assert f"{report['pr_auc']:.3f}" in kpis.inner_text()
    assert page.locator("#effects-table tbody tr").count() == 1 + len(report["effects"]["per_action"]) + len(report["effects"]["per_driver"])
    assert "all at-risk customers" in page.locator("#effects-table").inner_text()
    for chart in ("chart-calibration", "chart-uplift"):
        assert page.evaluate(f"Chart.getChart(document.getElementById('{chart}')) !== undefined"), chart
    assert page.locator("#drift-table tbody tr").count() == min(10, len(report["drift"])) > 0
    page.screenshot(path=output / "outcomes.png", full_page=True)
    assert not page.problems, page.problems
