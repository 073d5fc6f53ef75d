/* The retention team's page: risk list, one customer's reasons and actions, overview charts.
 *
 * Plain browser JavaScript, no build step. Data comes from the service it is served by:
 * POST /risk_list and POST /predict (the public API) and GET ui/api/* (the page's own JSON).
 * The API key is kept in sessionStorage (this tab only) and sent as "Authorization: Bearer".
 */
"use strict";

(function () {
  const KEY_STORAGE = "churn.apiKey";
  // The page lives at <root>/ui/; the API verbs at <root>/.
  const UI_BASE = location.pathname.replace(/[^/]*$/, "");
  const API_BASE = UI_BASE.replace(/ui\/$/, "");

  const state = {
    filters: { tier: "", pyramid: "", region: "", account_manager: "", risk_band: "" },
    stage: "retain",
    sort: "value_at_risk",
    limit: 50,
    offset: 0,
    total: 0,
    rows: [],
    optionsLoaded: false,
    charts: {},
  };

  const $ = (sel) => document.querySelector(sel);
  const pct = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const money = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const count = new Intl.NumberFormat(undefined);

  function fmtPct(v) { return v == null || Number.isNaN(v) ? "–" : pct.format(v); }
  function fmtMoney(v) { return v == null || Number.isNaN(v) ? "–" : money.format(v); }
  function days(n) { return n === 1 ? "1 day" : `${n} days`; }
  function fmtDate(v) { return v ? String(v).slice(0, 10) : "–"; }

  // ---------------------------------------------------------------------------------------------
  // talking to the service

  class AuthError extends Error {}

  function apiKey() { return sessionStorage.getItem(KEY_STORAGE) || ""; }

  async function call(url, options = {}) {
    const headers = { Accept: "application/json", Authorization: "Bearer " + apiKey() };
    const init = { method: options.method || "GET", headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const res = await fetch(url, init);
    if (res.status === 401 || res.status === 403) throw new AuthError("the API key was not accepted");
    let payload = null;
    const text = await res.text();
    try { payload = text ? JSON.parse(text) : null; } catch (e) { payload = { detail: text }; }
    if (!res.ok) {
      const detail = payload && (payload.error || payload.detail || payload.message);
      throw new Error(typeof detail === "string" ? detail : `${res.status} ${res.statusText}`);
    }
    return payload;
  }

  const ui = (path) => call(UI_BASE + "api/" + path);
  const api = (verb, body) => call(API_BASE + verb, { method: "POST", body });

  function setStatus(text, isError = false) {
    const el = $("#status");
    el.textContent = text || "";
    el.classList.toggle("error", !!isError);
  }

  async function guarded(work) {
    try {
      return await work();
    } catch (err) {
      if (err instanceof AuthError) {
        signOut("Your API key was not accepted; sign in again.");
      } else {
        setStatus("Something went wrong: " + err.message, true);
      }
      return undefined;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // small DOM helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return node;
  }

  function clamped(text, owner) {
    if (!text) return el("span", { class: "muted" }, "—");
    const node = el("span", { class: "clamp", title: text }, text);
    return owner ? el("span", {}, node, el("span", { class: "id" }, owner.replace(/_/g, " "))) : node;
  }

  function band(b) { return el("span", { class: "band band-" + (b || "low") }, b || "–"); }

  function fillTable(table, columns, rows, emptyText) {
    const thead = table.querySelector("thead");
    const tbody = table.querySelector("tbody");
    thead.replaceChildren(el("tr", {}, ...columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label))));
    if (!rows.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: String(columns.length), class: "empty" }, emptyText)));
      return;
    }
    tbody.replaceChildren(...rows.map((r) => el("tr", {}, ...columns.map((c) => {
      const v = c.value(r);
      return el("td", { class: c.num ? "num" : null }, v instanceof Node ? v : (v == null ? "–" : String(v)));
    }))));
  }

  function kpi(label, value) {
    return el("div", { class: "kpi" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
  }

  // ---------------------------------------------------------------------------------------------
  // views and routing

  const VIEWS = ["login", "list", "customer", "overview", "outcomes"];

  function show(view) {
    for (const v of VIEWS) $("#view-" + v).hidden = v !== view;
    const signedIn = view !== "login";
    $("#nav").hidden = !signedIn;
    $("#sign-out").hidden = !signedIn;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.view === view || (view === "customer" && a.dataset.view === "list")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  async function route() {
    if (!apiKey()) {
      show("login");
      $("#api-key").focus();
      return;
    }
    const hash = location.hash || "#/list";
    const customer = hash.match(/^#\/customer\/(.+)$/);
    setStatus("");
    loadModelInfo();
    if (customer) {
      show("customer");
      await guarded(() => loadCustomer(decodeURIComponent(customer[1])));
    } else if (hash.startsWith("#/overview")) {
      show("overview");
      await guarded(loadOverview);
    } else if (hash.startsWith("#/outcomes")) {
      show("outcomes");
      await guarded(loadOutcomes);
    } else {
      const stage = hash.startsWith("#/list/win_back") ? "win_back" : "retain";
      if (stage !== state.stage) { state.stage = stage; state.offset = 0; }
      show("list");
      await guarded(loadList);
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    state.optionsLoaded = false;
    show("login");
    $("#login-error").textContent = message || "";
    $("#model-info").textContent = "Model: sign in to see the model in use";
    $("#api-key").value = "";
    $("#api-key").focus();
  }

  // ---------------------------------------------------------------------------------------------
  // footer: the model in use

  let modelInfoShown = false;
  async function loadModelInfo() {
    if (modelInfoShown) return;
    const m = await guarded(() => ui("model"));
    if (!m) return;
    modelInfoShown = true;
    const parts = [
      `Model ${m.name} version ${m.version}` + (m.alias ? ` (@${m.alias})` : ""),
      m.recipe ? `serves ${m.recipe}` : null,
      m.trained_at ? `trained ${fmtDate(m.trained_at)}` + (m.train_last ? ` on snapshots up to ${fmtDate(m.train_last)}` : "") : null,
      m.test_pr_auc != null ? `test-period PR-AUC ${Number(m.test_pr_auc).toFixed(3)}` : null,
      m.as_of ? `data as of ${fmtDate(m.as_of)}` : null,
      m.customers != null ? `${count.format(m.customers)} active customers scored` : null,
    ];
    $("#model-info").textContent = parts.filter(Boolean).join(" · ");
  }

  // ---------------------------------------------------------------------------------------------
  // the risk list

  async function loadFilterOptions() {
    if (state.optionsLoaded) return;
    const opts = await ui("filters");
    const fill = (select, values) => {
      const current = select.value;
      select.replaceChildren(el("option", { value: "" }, "all"), ...values.map((v) => el("option", { value: v }, v)));
      select.value = current;
    };
    fill($("#f-region"), opts.region || []);
    fill($("#f-manager"), opts.account_manager || []);
    state.optionsLoaded = true;
  }

  const STAGES = {
    retain: {
      label: "still buying",
      note: "Customers still within (or just past) their own ordering rhythm: the ones a call can still keep. " +
        "Ranked by value at risk: churn probability × what they are worth over the next 12 months at their own recent trend.",
      actions: "What to do (keep the customer)",
    },
    win_back: {
      label: "gone quiet",
      note: "Customers silent far beyond their own rhythm: lost in practice. Win back in three steps - find the cause, act on it, " +
        "treat by category; low-value ones are marked as let-go candidates. Ranked by value worth recovering: churn probability × their last 12 months.",
      actions: "What to do (win-back steps)",
    },
  };

  function listRequest() {
    const body = { sort: state.sort, limit: state.limit, offset: state.offset, stage: [state.stage] };
    for (const [k, v] of Object.entries(state.filters)) if (v) body[k] = [v];
    return body;
  }

  async function loadList() {
    await loadFilterOptions();
    syncFilterForm();
    setStatus("Loading the risk list…");
    const res = await api("risk_list", listRequest());
    const rows = res.items || [];
    if (rows.length) {
      const names = await ui("names?ids=" + rows.map((r) => encodeURIComponent(r.customer_id)).join(","));
      for (const r of rows) r.name = names[r.customer_id] || "";
    }
    state.rows = rows;
    state.total = res.total || 0;
    state.asOf = res.as_of;
    renderList();
    setStatus("");
  }

  function syncFilterForm() {
    $("#f-tier").value = state.filters.tier;
    $("#f-pyramid").value = state.filters.pyramid;
    $("#f-region").value = state.filters.region;
    $("#f-manager").value = state.filters.account_manager;
    $("#f-band").value = state.filters.risk_band;
    $("#f-sort").value = state.sort;
    $("#f-size").value = String(state.limit);
  }

  function firstReason(r) {
    if (r.top_reason) return r.top_reason;
    const reasons = r.reasons || [];
    return reasons.length ? reasons[0].sentence : "";
  }

  function firstAction(r) {
    if (r.control) return "control: no action this cycle";
    if (r.first_action) return r.first_action;
    const actions = r.actions || [];
    return actions.length ? actions[0].action : "";
  }

  function renderList() {
    const tbody = $("#risk-table tbody");
    const active = Object.entries(state.filters).filter(([, v]) => v).map(([k, v]) => `${k.replace("_", " ")} ${v}`);
    for (const tab of document.querySelectorAll(".tabs [role=tab]")) tab.setAttribute("aria-selected", String(tab.dataset.stage === state.stage));
    $("#stage-note").textContent = STAGES[state.stage].note;
    $("#var-header").title = STAGES[state.stage].note;
    $("#risk-caption").textContent = `${count.format(state.total)} active customers ${STAGES[state.stage].label}` +
      (active.length ? ` (${active.join(", ")})` : "") +
      `, sorted by ${state.sort === "probability" ? "churn probability" : "value at risk"}`;
    if (!state.rows.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: "11", class: "empty" }, "No customer matches these filters.")));
    } else {
      tbody.replaceChildren(...state.rows.map((r, i) => el("tr", { "data-customer-id": r.customer_id },
        el("td", { class: "num" }, String(state.offset + i + 1)),
        el("td", {},
          el("a", { class: "customer-link", href: "#/customer/" + encodeURIComponent(r.customer_id) }, r.name || r.customer_id),
          el("span", { class: "id" }, r.customer_id),
          r.let_go ? el("span", { class: "tag let-go" }, "let-go candidate") : "",
          r.control ? el("span", { class: "tag control" }, "control: no action this cycle") : ""),
        el("td", { class: "nowrap" }, `${r.tier || "–"} · ${r.pyramid || "–"}`),
        el("td", {}, r.region || "–"),
        el("td", {}, r.account_manager || "–"),
        el("td", { class: "num" }, fmtPct(r.churn_probability)),
        el("td", {}, band(r.risk_band)),
        el("td", { class: "num" }, fmtMoney(r.revenue_12m)),
        el("td", { class: "num" }, fmtMoney(r.value_at_risk)),
        el("td", { class: "reason" }, clamped(firstReason(r))),
        el("td", { class: "action" }, clamped(firstAction(r), r.actions && r.actions[0] ? r.actions[0].owner : "")),
      )));
    }
    const from = state.total ? state.offset + 1 : 0;
    const to = state.offset + state.rows.length;
    $("#page-info").textContent = `${count.format(from)}–${count.format(to)} of ${count.format(state.total)}`;
    $("#page-prev").disabled = state.offset === 0;
    $("#page-next").disabled = to >= state.total;
  }

  function readFilterForm() {
    state.filters = {
      tier: $("#f-tier").value,
      pyramid: $("#f-pyramid").value,
      region: $("#f-region").value,
      account_manager: $("#f-manager").value,
      risk_band: $("#f-band").value,
    };
    state.sort = $("#f-sort").value;
    state.limit = parseInt($("#f-size").value, 10) || 50;
    state.offset = 0;
  }

  // A text cell starting with = + - @ (or a tab or carriage return) would run as a formula in a
  // spreadsheet: prefix it with an apostrophe. Numbers (a negative revenue too) stay numbers.
  function csvCell(v) {
    let s = v == null ? "" : String(v);
    if (typeof v !== "number" && /^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s)) s = "'" + s;
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function exportCsv() {
    const header = ["rank", "customer_id", "name", "stage", "let_go", "tier", "pyramid", "region", "account_manager",
      "churn_probability", "risk_band", "revenue_12m", "value_12m", "value_at_risk", "top_reason", "first_action"];
    const lines = [header.join(",")];
    state.rows.forEach((r, i) => {
      lines.push([
        state.offset + i + 1, r.customer_id, r.name || "", r.stage || "", r.let_go ? "yes" : "", r.tier, r.pyramid, r.region, r.account_manager,
        r.churn_probability == null ? "" : r.churn_probability, r.risk_band,
        r.revenue_12m == null ? "" : Number(r.revenue_12m).toFixed(2),
        r.value_12m == null ? "" : Number(r.value_12m).toFixed(2),
        r.value_at_risk == null ? "" : Number(r.value_at_risk).toFixed(2),
        firstReason(r), firstAction(r),
      ].map(csvCell).join(","));
    });
    // A byte-order mark so that spreadsheet programs read the file as UTF-8.
    const blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
    const parts = Object.entries(state.filters).filter(([, v]) => v).map(([k, v]) => `${k}-${v}`.replace(/[^\w-]+/g, "_"));
    const name = ["risk_list", state.stage, ...parts, `rows-${state.offset + 1}-${state.offset + state.rows.length}`].join("_") + ".csv";
    const a = el("a", { href: URL.createObjectURL(blob), download: name });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    setStatus(`Exported ${state.rows.length} rows to ${name}.`);
  }

  // ---------------------------------------------------------------------------------------------
  // one customer

  function deadline(a, asOf) {
    const days = a.deadline_days;
    const due = a.due_by;
    if (days != null && due) return `within ${days} days (by ${fmtDate(due)})`;
    if (days != null && asOf) {
      const d = new Date(String(asOf).slice(0, 10) + "T00:00:00Z");
      d.setUTCDate(d.getUTCDate() + Number(days));
      return `within ${days} days (by ${d.toISOString().slice(0, 10)})`;
    }
    if (days != null) return `within ${days} days`;
    return due ? fmtDate(due) : "–";
  }

  async function loadCustomer(id) {
    setStatus("Loading customer " + id + "…");
    $("#customer-title").textContent = "Customer " + id;
    $("#back-to-list").href = state.stage === "win_back" ? "#/list/win_back" : "#/list";
    for (const sel of ["#customer-facts", "#customer-kpis", "#reasons", "#actions tbody"]) $(sel).replaceChildren();
    const [detail, predicted] = await Promise.all([
      ui("customers/" + encodeURIComponent(id)),
      api("predict", { customers: [{ customer_id: id }] }),
    ]);
    const p = (predicted.results || predicted.predictions || predicted.customers || [])[0] || {};
    if (p.error) throw new Error(p.error.message || p.error);
    const c = detail.customer || {};
    $("#customer-title").textContent = c.name ? `${c.name} (${id})` : `Customer ${id}`;
    $("#customer-facts").textContent = [
      c.segment, c.region && `region ${c.region}`, c.channel && `${c.channel} channel`,
      c.settlement_terms && `${c.settlement_terms} terms`, c.account_manager && `account manager ${c.account_manager}`,
      c.created_at && `customer since ${fmtDate(c.created_at)}`,
    ].filter(Boolean).join(" · ");

    $("#customer-kpis").replaceChildren(
      kpi("Churn probability", fmtPct(p.churn_probability)),
      el("div", { class: "kpi" }, el("div", { class: "label" }, "Risk band"), el("div", { class: "value" }, band(p.risk_band))),
      kpi("ABC class / pyramid", `${p.tier || "–"} / ${p.pyramid || "–"}`),
      kpi("Stage", p.stage ? `${p.stage === "win_back" ? "gone quiet (win back)" : "still buying (keep)"}${p.let_go ? " · let-go candidate" : ""}` : "–"),
      kpi("Revenue, 12 months", fmtMoney(p.revenue_12m)),
      kpi("Worth over the next 12 months", fmtMoney(p.value_12m)),
      kpi("Value at risk", fmtMoney(p.value_at_risk)),
      kpi("As of", fmtDate(predicted.as_of || p.as_of || detail.as_of)),
    );

    $("#actions-title").textContent = STAGES[p.stage] ? STAGES[p.stage].actions : "What to do";
    const reasons = p.reasons || [];
    $("#reasons").replaceChildren(...(reasons.length ? reasons.map((r) => el("li", {},
      el("span", { class: "reason-text" }, r.sentence),
      r.driver ? el("span", { class: "impact" }, " · " + r.driver.replace(/_/g, " ")) : "",
    )) : [el("li", { class: "empty" }, "No strong driver: the customer orders as usual.")]));

    const actions = p.actions || [];
    const asOf = predicted.as_of || p.as_of || detail.as_of;
    const tbody = $("#actions tbody");
    tbody.replaceChildren(...(actions.length ? actions.map((a) => el("tr", {},
      el("td", {}, el("span", { class: "action-text" }, a.action), a.why ? el("span", { class: "id" }, a.why) : ""),
      el("td", { class: "owner" }, (a.owner || "").replace(/_/g, " ")),
      el("td", { class: "deadline" }, deadline(a, asOf)),
    )) : [el("tr", {}, el("td", { colspan: "3", class: "empty" }, "No action needed at this risk level."))]));
    showDoneForm(id, p, actions);

    fillTable($("#groups"), [
      { label: "Product group", value: (g) => g.product_group },
      { label: "Chance it stops", num: true, value: (g) => fmtPct(g.probability) },
      { label: "Bought, 12 months", num: true, value: (g) => fmtMoney(g.group_revenue_12m) },
      { label: "Value at risk", num: true, value: (g) => fmtMoney(g.value_at_risk) },
      { label: "Last bought", num: true, value: (g) => days(Math.round(g.days_since_bought)) + " ago" },
    ], p.groups_at_risk || [], "No product group bought regularly (or no order lines in the data).");

    const tot = detail.totals || {};
    $("#orders-title").textContent = `Recent orders (${count.format(tot.orders || 0)} in all, the last on ${fmtDate(tot.last_order)})`;
    $("#complaints-title").textContent = tot.open_complaints != null
      ? `Complaints (投诉): ${count.format(tot.open_complaints)} open` : "Complaints (投诉)";
    $("#invoices-title").textContent = tot.open_balance != null
      ? `Open invoices (应收账款): ${fmtMoney(tot.open_balance)} unpaid, ${fmtMoney(tot.overdue_balance)} past due` : "Open invoices (应收账款)";
    $("#contacts-title").textContent = tot.days_since_last_contact != null
      ? `Contacts (回访): last one ${days(tot.days_since_last_contact)} ago` : "Contacts (回访)";
    fillTable($("#orders"), [
      { label: "Date", value: (r) => fmtDate(r.order_date) },
      { label: "Order", value: (r) => r.order_id },
      { label: "Amount", num: true, value: (r) => fmtMoney(r.amount) },
      { label: "Margin", num: true, value: (r) => fmtMoney(r.margin) },
    ], detail.orders || [], "No orders.");
    fillTable($("#complaints"), [
      { label: "Opened", value: (r) => fmtDate(r.opened_at) },
      { label: "Category", value: (r) => r.category },
      { label: "Severity", value: (r) => r.severity },
      { label: "Status", value: (r) => r.resolved_at ? `resolved ${fmtDate(r.resolved_at)} (${days(r.days_to_resolve)})` : `open for ${days(r.days_open)}` },
    ], detail.complaints || [], "No complaints.");
    fillTable($("#invoices"), [
      { label: "Invoice", value: (r) => r.invoice_id },
      { label: "Issued", value: (r) => fmtDate(r.issued_at) },
      { label: "Due", value: (r) => fmtDate(r.due_at) },
      { label: "Amount", num: true, value: (r) => fmtMoney(r.amount) },
      { label: "Days past due", num: true, value: (r) => r.days_past_due > 0 ? String(r.days_past_due) : "not due" },
      { label: "Aging", value: (r) => r.aging_bucket },
    ], detail.invoices || [], "No open invoices.");
    fillTable($("#contacts"), [
      { label: "Date", value: (r) => fmtDate(r.contacted_at) },
      { label: "Kind", value: (r) => r.kind },
    ], detail.contacts || [], "No contacts recorded.");
    setStatus("");
    $("#customer-title").focus?.();
  }

  // ---------------------------------------------------------------------------------------------
  // marking an action done (POST /actions; the id is the client's, so a repeated click stores it once)

  const OWNER_STORAGE = "churn.owner";

  function newRecordId() {
    return (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : `ui-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  }

  function showDoneForm(customerId, p, actions) {
    const form = $("#done-form");
    const keyed = actions.filter((a) => a.key);
    $("#control-note").hidden = !p.control;
    form.hidden = !keyed.length || !!p.control;
    $("#done-status").textContent = "";
    if (form.hidden) return;
    $("#done-action").replaceChildren(...keyed.map((a) => el("option", { value: a.key }, a.action)));
    $("#done-owner").value = localStorage.getItem(OWNER_STORAGE) || "";
    $("#done-note").value = "";
    form.dataset.customerId = customerId;
    form.dataset.recordId = newRecordId();
  }

  async function submitDone(ev) {
    ev.preventDefault();
    const form = $("#done-form");
    const owner = $("#done-owner").value.trim();
    const body = {
      id: form.dataset.recordId,
      customer_id: form.dataset.customerId,
      action: $("#done-action").value,
      owner,
      done_at: new Date().toISOString(),
      outcome: $("#done-outcome").value,
      note: $("#done-note").value.trim(),
    };
    $("#done-submit").disabled = true;
    try {
      const res = await guarded(() => api("actions", body));
      if (!res) return;
      localStorage.setItem(OWNER_STORAGE, owner);
      const text = $("#done-action").selectedOptions[0].textContent;
      $("#done-status").textContent = `Recorded: ${text} (${body.outcome.replace(/_/g, " ")}).`;
      form.dataset.recordId = newRecordId();
      $("#done-note").value = "";
    } finally {
      $("#done-submit").disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // overview

  const TIER_COLOURS = { A: "#1f5fa8", B: "#e08a00", C: "#6c8a3c", all: "#555f6d" };
  const BAND_COLOURS = { high: "#c0392b", medium: "#e0a100", low: "#3f8f5a" };

  function drawChart(id, config) {
    if (typeof Chart === "undefined") throw new Error("the charting library did not load");
    if (state.charts[id]) state.charts[id].destroy();
    state.charts[id] = new Chart($("#" + id), config);
  }

  function rateChart(id, periods, tiers, field) {
    const labels = periods.map((p) => p.label);
    drawChart(id, {
      type: "line",
      data: {
        labels,
        datasets: tiers.map((t) => ({
          label: t === "all" ? "all customers" : `class ${t}`,
          data: periods.map((p) => (p.tiers[t] ? p.tiers[t][field] : null)),
          borderColor: TIER_COLOURS[t] || "#888",
          backgroundColor: TIER_COLOURS[t] || "#888",
          borderWidth: t === "all" ? 3 : 2,
          borderDash: t === "all" ? [6, 3] : [],
          tension: 0.2,
          spanGaps: true,
        })),
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { ticks: { callback: (v) => pct.format(v) }, beginAtZero: field === "churn_rate" } },
        plugins: { tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmtPct(ctx.parsed.y)}` } } },
      },
    });
  }

  async function loadOverview() {
    setStatus("Loading the overview…");
    const o = await ui("overview");
    const tiers = o.tiers || ["A", "B", "C", "all"];
    // periods -> {label, tiers: {A: {...}, ...}}
    const byStart = new Map();
    for (const r of o.churn_by_period || []) {
      if (!byStart.has(r.period_start)) byStart.set(r.period_start, { label: r.period_label || r.period_start, start: r.period_start, tiers: {} });
      byStart.get(r.period_start).tiers[r.tier] = r;
    }
    const periods = [...byStart.values()].sort((a, b) => (a.start < b.start ? -1 : 1));
    const last = periods.length ? periods[periods.length - 1].tiers.all : null;

    $("#overview-note").textContent = `Churn rate = customers lost / customers active at the start of the period ` +
      `(active: ordered in the ${o.active_days} days before; lost: no order in the next ${o.horizon_days} days). ` +
      `Retention rate = 1 − churn rate. Risk figures are the model's, as of ${fmtDate(o.as_of)}.`;
    const t = o.totals || {};
    $("#overview-kpis").replaceChildren(
      kpi("Active customers now", count.format(t.customers || 0)),
      kpi("High risk now", count.format(t.high_risk || 0)),
      kpi("Value at risk now", fmtMoney(t.value_at_risk)),
      kpi(last ? `Churn rate, ${last.period_label}` : "Churn rate", last ? fmtPct(last.churn_rate) : "–"),
      kpi(last ? `Retention rate, ${last.period_label}` : "Retention rate", last ? fmtPct(last.retention_rate) : "–"),
    );

    rateChart("chart-churn", periods, tiers, "churn_rate");
    rateChart("chart-retention", periods, tiers, "retention_rate");

    const bandTiers = [...new Set((o.risk_by_tier || []).map((r) => r.tier))].sort();
    const bands = ["high", "medium", "low"];
    const cell = (tier, b) => (o.risk_by_tier || []).find((r) => r.tier === tier && r.risk_band === b);
    drawChart("chart-bands", {
      type: "bar",
      data: {
        labels: bandTiers.map((x) => `class ${x}`),
        datasets: bands.map((b) => ({
          label: `${b} risk`,
          data: bandTiers.map((x) => (cell(x, b) || {}).customers || 0),
          backgroundColor: BAND_COLOURS[b],
        })),
      },
      options: {
        maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "customers" } } },
      },
    });

    const allManagers = o.value_at_risk_by_manager || [];
    const managers = allManagers.slice(0, 15);
    $("#chart-managers-title").textContent = "Value at risk by account manager (now" + (allManagers.length > 15 ? ", top 15)" : ")");
    drawChart("chart-managers", {
      type: "bar",
      data: {
        labels: managers.map((m) => m.account_manager),
        datasets: [{ label: "value at risk", data: managers.map((m) => m.value_at_risk), backgroundColor: "#1f5fa8" }],
      },
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (ctx) => `value at risk ${fmtMoney(ctx.parsed.x)}` } } },
        scales: { x: { ticks: { callback: (v) => money.format(v) } } },
      },
    });

    const cols = [{ label: "Period", value: (p) => p.label }];
    for (const tier of tiers) {
      const name = tier === "all" ? "All" : tier;
      cols.push({ label: `${name} churn`, num: true, value: (p) => (p.tiers[tier] ? fmtPct(p.tiers[tier].churn_rate) : "–") });
      cols.push({ label: `${name} retention`, num: true, value: (p) => (p.tiers[tier] ? fmtPct(p.tiers[tier].retention_rate) : "–") });
    }
    cols.push({ label: "Active at start", num: true, value: (p) => (p.tiers.all ? count.format(p.tiers.all.active) : "–") });
    cols.push({ label: "Lost", num: true, value: (p) => (p.tiers.all ? count.format(p.tiers.all.lost) : "–") });
    fillTable($("#rates-table"), cols, periods.slice().reverse(), "Not enough history for a full period yet.");

    // Account managers of the latest period: those with enough customers to say something, worst first.
    const mgr = (o.churn_by_manager_latest || []);
    const enough = mgr.filter((m) => m.active >= 10);
    const shownMgr = (enough.length ? enough : mgr).slice(0, 15);
    $("#managers-title").textContent = mgr.length
      ? `Churn rate by account manager, ${last ? last.period_label : ""} (highest first${enough.length && enough.length < mgr.length ? ", managers with 10+ active customers" : ""})`
      : "Churn rate by account manager";
    fillTable($("#managers-table"), [
      { label: "Account manager", value: (m) => m.account_manager },
      { label: "Active at start", num: true, value: (m) => count.format(m.active) },
      { label: "Lost", num: true, value: (m) => count.format(m.lost) },
      { label: "Churn rate", num: true, value: (m) => fmtPct(m.churn_rate) },
      { label: "Retention rate", num: true, value: (m) => fmtPct(m.retention_rate) },
      { label: "12-month revenue lost", num: true, value: (m) => fmtMoney(m.revenue_lost) },
    ], shownMgr, "No account managers in the data.");
    setStatus("");
  }

  // ---------------------------------------------------------------------------------------------
  // outcomes: what happened after each scoring run (churn outcomes)

  const fmtAuc = (v) => (v == null ? "–" : Number(v).toFixed(3));
  const fmtUplift = (c) => `${c.uplift >= 0 ? "+" : ""}${pct.format(c.uplift)} (${pct.format(c.low)} to ${pct.format(c.high)})`;

  async function loadOutcomes() {
    setStatus("Loading the outcomes…");
    const reports = ((await ui("outcomes")).reports || []).slice().reverse();
    const select = $("#outcomes-run");
    $("#outcomes-note").textContent = reports.length
      ? "For every scoring run whose horizon has passed: realised churn (no order in the horizon) against the served probability, " +
        "and where the run held out a control group, the retention of treated against control at-risk customers."
      : "No outcomes yet: run `churn score --holdout 0.1`, record the actions, and after the horizon `churn outcomes`.";
    select.replaceChildren(...reports.map((r, i) => el("option", { value: String(i) }, `${r.as_of} (model version ${r.model_version})`)));
    $("#outcomes-run-field").hidden = !reports.length;
    select.onchange = () => renderOutcome(reports[Number(select.value)]);
    if (reports.length) renderOutcome(reports[0]);
    setStatus("");
  }

  function comparisons(effects) {
    if (!effects || !effects.overall) return [];
    return [["all at-risk customers", effects.overall],
      ...Object.entries(effects.per_action || {}).map(([k, c]) => [`action ${k}`, c]),
      ...Object.entries(effects.per_driver || {}).map(([k, c]) => [`driver ${k.replace(/_/g, " ")}`, c])];
  }

  function renderOutcome(r) {
    $("#outcomes-retrain").replaceChildren(...(r.retrain || []).map((reason) => el("li", {}, "Retrain recommended: " + reason)));
    const overall = r.effects && r.effects.overall;
    $("#outcomes-kpis").replaceChildren(
      kpi("Run as of", `${fmtDate(r.as_of)} → ${fmtDate(r.horizon_end)}`),
      kpi("Customers scored", count.format(r.customers)),
      kpi("Churn predicted / realised", `${fmtPct(r.predicted_churn_rate)} / ${fmtPct(r.churn_rate)}`),
      kpi("Realised ROC-AUC", fmtAuc(r.roc_auc)),
      kpi("Realised PR-AUC" + (r.test_pr_auc != null ? " (test)" : ""), fmtAuc(r.pr_auc) + (r.test_pr_auc != null ? ` (${fmtAuc(r.test_pr_auc)})` : "")),
      kpi("Retention uplift", overall ? fmtUplift(overall) : "no control group"),
    );
    const deciles = r.deciles || [];
    drawChart("chart-calibration", {
      type: "bar",
      data: {
        labels: deciles.map((d) => `decile ${d.decile}`),
        datasets: [
          { label: "predicted", data: deciles.map((d) => d.predicted), backgroundColor: "#9db7d8" },
          { label: "realised", data: deciles.map((d) => d.realised), backgroundColor: "#1f5fa8" },
        ],
      },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, max: 1, ticks: { callback: (v) => pct.format(v) } } } },
    });
    const rows = comparisons(r.effects);
    drawChart("chart-uplift", {
      type: "bar",
      data: {
        labels: rows.map(([name]) => name),
        datasets: [
          { label: "uplift", data: rows.map(([, c]) => c.uplift), backgroundColor: "#3f8f5a" },
          { label: "interval low", data: rows.map(([, c]) => c.low), backgroundColor: "#c9d9cf" },
          { label: "interval high", data: rows.map(([, c]) => c.high), backgroundColor: "#c9d9cf" },
        ],
      },
      options: { indexAxis: "y", maintainAspectRatio: false, animation: false, scales: { x: { ticks: { callback: (v) => pct.format(v) } } } },
    });
    fillTable($("#effects-table"), [
      { label: "Group", value: ([name]) => name },
      { label: "Treated", num: true, value: ([, c]) => count.format(c.treated) },
      { label: "Control", num: true, value: ([, c]) => count.format(c.control) },
      { label: "Treated kept", num: true, value: ([, c]) => fmtPct(c.treated_retention) },
      { label: "Control kept", num: true, value: ([, c]) => fmtPct(c.control_retention) },
      { label: "Uplift (95% interval)", num: true, value: ([, c]) => fmtUplift(c) },
    ], rows, "No control group in this run: `churn score --holdout 0.1` holds one out.");
    fillTable($("#bands-table"), [
      { label: "Band", value: (b) => band(b.risk_band) },
      { label: "Customers", num: true, value: (b) => count.format(b.customers) },
      { label: "Predicted", num: true, value: (b) => fmtPct(b.predicted) },
      { label: "Realised", num: true, value: (b) => fmtPct(b.realised) },
    ], r.bands || [], "No customers.");
    fillTable($("#drift-table"), [
      { label: "Input", value: (d) => (d.feature === "__score__" ? "the scores" : d.feature) },
      { label: "PSI", num: true, value: (d) => Number(d.psi).toFixed(3) },
    ], (r.drift || []).slice(0, 10), "No drift figures for this run.");
  }

  // ---------------------------------------------------------------------------------------------
  // wiring

  function init() {
    $("#login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const key = $("#api-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      $("#login-error").textContent = "";
      try {
        await ui("model");
      } catch (err) {
        sessionStorage.removeItem(KEY_STORAGE);
        $("#login-error").textContent = err instanceof AuthError ? "That API key was not accepted." : "The service did not answer: " + err.message;
        return;
      }
      modelInfoShown = false;
      if (!location.hash || location.hash === "#/login") location.hash = "#/list";
      else route();
    });
    $("#sign-out").addEventListener("click", () => signOut("Signed out."));

    const filters = $("#filters");
    filters.addEventListener("change", () => { readFilterForm(); guarded(loadList); });
    filters.addEventListener("submit", (ev) => ev.preventDefault());
    filters.addEventListener("reset", () => setTimeout(() => { readFilterForm(); guarded(loadList); }, 0));
    $("#export-csv").addEventListener("click", exportCsv);
    $("#done-form").addEventListener("submit", submitDone);
    $("#page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); guarded(loadList); });
    $("#page-next").addEventListener("click", () => { state.offset += state.limit; guarded(loadList); });

    window.addEventListener("hashchange", route);
    route();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
