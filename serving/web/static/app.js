/* The clinician form: checks the patient against the schema-derived field spec, asks the
   service for the prognosis and draws it. It talks to this service only (relative URLs; the
   page's Content-Security-Policy forbids any other host) and keeps nothing but the access
   token, in this tab's sessionStorage. SPDX-License-Identifier: GPL-3.0-or-later */
"use strict";

(() => {
  const TOKEN_KEY = "netprog.apiToken";
  const HORIZONS = ["12", "24", "36", "60"];
  const HORIZON_TEXT = { 12: "1 year", 24: "2 years", 36: "3 years", 60: "5 years" };
  // Okabe-Ito colours (distinguishable with colour-vision deficiency), each with its own dash
  // and marker so that no line is told apart by colour alone.
  const STYLE = {
    TACE: { color: "#0072B2", dash: "solid", symbol: "circle", glyph: "●", fill: "rgba(0,114,178,0.16)" },
    TAE: { color: "#D55E00", dash: "dash", symbol: "square", glyph: "■", fill: "rgba(213,94,0,0.16)" },
    SIRT: { color: "#009E73", dash: "dot", symbol: "diamond", glyph: "◆", fill: "rgba(0,158,115,0.16)" },
  };
  const INCIDENCE = { axis: "Hepatic progression", axisPrint: "Progressed" };
  const RAISES = "#B2182B";
  const LOWERS = "#2166AC";
  const ENDPOINTS = [
    { key: "hpfs", short: "HPFS", name: "Hepatic progression-free survival (progression or death)", free: "alive and free of hepatic progression", axis: "Alive, progression-free", axisPrint: "Progression-free", event: "hepatic progression or death" },
    { key: "os", short: "OS", name: "Overall survival", free: "alive", axis: "Alive", axisPrint: "Alive", event: "death" },
  ];
  const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
  // One A4 page: two charts side by side in 190 mm of width (CSS pixels at 96 dpi).
  const PRINT_CHART = { width: 350, height: 120, explainHeight: 148, font: 8 };
  const PRINT_FONT = "Arial, 'Liberation Sans', 'Helvetica Neue', Helvetica, sans-serif";

  const spec = JSON.parse(document.getElementById("form-spec").textContent);
  const fields = spec.fields;
  const byName = new Map(fields.map((f) => [f.name, f]));
  const groups = spec.alternatives.map((names) => ({ names, id: `group-${names.join("-")}` }));

  const $ = (id) => document.getElementById(id);
  const form = $("patient-form");
  const status = $("status");
  const summary = $("form-errors");
  const submitButton = $("submit-button");
  const dialog = $("token-dialog");
  let lastPatient = null;
  let lastPrognosis = null;
  let printing = false;

  const url = (path) => new URL(path, document.baseURI).toString();

  // ---- Access token ------------------------------------------------------------------------

  let tokenRequest = null;

  class TokenMissing extends Error {
    constructor() {
      super("This service needs an access token: estimate again and enter the token when asked.");
    }
  }

  function askToken(reason) {
    if (tokenRequest) return tokenRequest;
    tokenRequest = new Promise((resolve, reject) => {
      $("token-reason").textContent = reason;
      const input = $("token-input");
      const error = $("token-error");
      input.value = "";
      error.hidden = true;
      const finish = (outcome) => {
        tokenForm.removeEventListener("submit", onSubmit);
        dialog.removeEventListener("cancel", onCancel);
        tokenRequest = null;
        outcome();
      };
      const onSubmit = (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) {
          error.textContent = "Enter the access token you were given for this service.";
          error.hidden = false;
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
        input.removeAttribute("aria-invalid");
        sessionStorage.setItem(TOKEN_KEY, token);
        dialog.close();
        finish(resolve);
      };
      const onCancel = () => finish(() => reject(new TokenMissing()));
      const tokenForm = $("token-form");
      tokenForm.addEventListener("submit", onSubmit);
      dialog.addEventListener("cancel", onCancel);
      if (!dialog.open) dialog.showModal();
      input.focus();
    });
    return tokenRequest;
  }

  async function call(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(url(path), {
      ...options,
      headers,
      cache: "no-store",
      credentials: "same-origin",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      const reason = response.status === 403
        ? "The service did not accept that token. Enter a valid access token."
        : "This service needs an access token. Enter the token you were given.";
      await askToken(reason);
      return call(path, options);
    }
    return response;
  }

  // ---- Model card: version and training data, shown before any patient is entered ----------

  async function loadModel() {
    try {
      const response = await call("v1/model");
      if (!response.ok) throw new Error(`the service answered ${response.status}`);
      showModel(await response.json());
    } catch (error) {
      $("model-line").textContent = error instanceof TokenMissing
        ? "Model: shown once an access token is given."
        : `Model: not available (${error.message}).`;
    }
  }

  function showModel(card) {
    const data = card.training_data || {};
    const when = (data.trained_at || card.registered_at || "").slice(0, 10);
    $("model-line").innerHTML = "";
    $("model-line").append(
      text("span", "Model "),
      text("strong", card.tag || card.name),
      text("span", ` · trained on ${data.label || "unknown"} data${when ? ` · ${when}` : ""}`),
    );
    setTrainingBanner(data.label, card.disclaimer);
    showAboutModel(card);
  }

  function showAboutModel(card) {
    $("about-uncertainty").textContent = (card.uncertainty && card.uncertainty.text) || "";
    const evidence = card.evidence_base;
    $("about-evidence").hidden = !evidence;
    $("about-evidence-list").innerHTML = "";
    if (evidence) {
      for (const subgroup of evidence.subgroups) {
        $("about-evidence-list").append(text("li", subgroup.text));
      }
      $("about-evidence-assumption").textContent =
        `Patients per grade and modality are estimates: ${evidence.assumption}.`;
    }
  }

  // One "value (interval)" table cell; † marks a value beyond adequate follow-up.
  function horizonCell(s) {
    const cell = text("td", pct(s.value), "num");
    if (s.extrapolated) cell.append(text("span", " †", "flag"));
    cell.append(text("span", ` ${pctRange(s)}`, "interval"));
    return cell;
  }

  function setTrainingBanner(label, disclaimer) {
    const banner = $("disclaimer-banner");
    banner.classList.toggle("synthetic", label === "synthetic");
    $("disclaimer-title").textContent = label === "synthetic"
      ? "Synthetic training data: not for clinical use."
      : "Decision support for the tumour board, not a decision.";
    $("disclaimer-text").textContent = disclaimer || "";
  }

  // ---- Reading and checking the form --------------------------------------------------------

  function readField(field) {
    const control = $(field.id);
    if (field.control === "checkbox") return { value: control.checked };
    if (field.control === "tristate") {
      return { value: control.value === "" ? null : control.value === "true" };
    }
    if (field.control === "select") {
      if (control.value === "") {
        return field.required ? { error: `Choose the ${lower(field.label)}.` } : { value: null };
      }
      return { value: control.value };
    }
    return readNumber(field, control);
  }

  function readNumber(field, control) {
    const raw = control.value.trim();
    if (control.validity.badInput) return { error: `${field.label} must be a number.` };
    if (raw === "") {
      return field.required ? { error: `Enter the ${lower(field.label)}.` } : { value: null };
    }
    const value = Number(raw);
    if (!Number.isFinite(value)) return { error: `${field.label} must be a number.` };
    if (field.integer && !Number.isInteger(value)) {
      return { error: `${field.label} must be a whole number${unitText(field)}.` };
    }
    const below = field.minimum !== null && value < field.minimum;
    const above = field.maximum !== null && value > field.maximum;
    if (below || above) {
      const bounded = field.minimum !== null && field.maximum !== null;
      const allowed = bounded
        ? `between ${field.minimum} and ${field.maximum}`
        : below ? `at least ${field.minimum}` : `at most ${field.maximum}`;
      return {
        error: `${field.label} must be ${allowed}${unitText(field)}; ${raw} is ${below ? "below" : "above"} that range.`,
      };
    }
    return { value };
  }

  function collect() {
    const patient = {};
    const extra = {};
    const errors = [];
    for (const field of fields) {
      const { value, error } = readField(field);
      if (error) {
        errors.push({ field: field.name, message: error });
        continue;
      }
      if (value === null) continue;
      (field.scope === "patient" ? patient : extra)[field.name] = value;
    }
    for (const group of groups) {
      const failed = group.names.some((n) => errors.some((e) => e.field === n));
      if (!failed && group.names.every((n) => !(n in patient))) {
        const labels = group.names.map((n) => byName.get(n).label);
        errors.push({ group: group.id, message: `Give the ${labels.join(" or the ")} (at least one).` });
      }
    }
    return { body: { patient, ...extra }, errors };
  }

  // ---- Errors next to their fields ----------------------------------------------------------

  function clearErrors() {
    summary.hidden = true;
    summary.innerHTML = "";
    for (const element of form.querySelectorAll(".error")) {
      element.hidden = true;
      element.textContent = "";
    }
    for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
    for (const element of form.querySelectorAll(".invalid")) element.classList.remove("invalid");
  }

  function showErrors(errors) {
    const list = document.createElement("ul");
    let first = null;
    for (const error of errors) {
      const targetId = error.field ? error.field : error.group;
      const slot = targetId ? form.querySelector(`[data-error-for="${targetId}"]`) : null;
      let control = null;
      if (slot) {
        slot.textContent = error.message;
        slot.hidden = false;
        slot.closest(".field, .alternatives").classList.add("invalid");
        control = error.field
          ? $(byName.get(error.field).id)
          : $(byName.get(groups.find((g) => g.id === error.group).names[0]).id);
        control.setAttribute("aria-invalid", "true");
        first = first || control;
      }
      const item = document.createElement("li");
      if (control) {
        const link = text("a", error.message);
        link.href = `#${control.id}`;
        link.addEventListener("click", (event) => {
          event.preventDefault();
          control.focus();
        });
        item.append(link);
      } else {
        item.textContent = error.message;
      }
      list.append(item);
    }
    summary.innerHTML = "";
    summary.append(
      text("p", errors.length === 1 ? "The prognosis was not requested: 1 problem." : `The prognosis was not requested: ${errors.length} problems.`),
      list,
    );
    summary.hidden = false;
    status.textContent = "Correct the highlighted fields, then estimate again.";
    (first || summary).focus();
  }

  function serverErrors(details) {
    return details.map((detail) => {
      const loc = (detail.loc || []).map(String);
      const name = loc[0] === "patient" ? loc[1] : loc[0];
      if (name && byName.has(name)) return { field: name, message: fieldMessage(name, detail.msg) };
      const group = groups.find((g) => g.names.some((n) => String(detail.msg).includes(n)));
      if (group) return { group: group.id, message: cleanMessage(detail.msg) };
      return { field: null, message: cleanMessage(detail.msg) };
    });
  }

  const fieldMessage = (name, message) => `${byName.get(name).label}: ${cleanMessage(message)}`;
  const cleanMessage = (message) => String(message || "invalid value").replace(/^Value error, /, "");

  // ---- Submitting ---------------------------------------------------------------------------

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const { body, errors } = collect();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    setBusy(true);
    try {
      const response = await call("v1/prognosis", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        // The form draws the contributions over time (serving/web/static/views.js).
        body: JSON.stringify({ ...body, contributions_over_time: true }),
      });
      const answer = await response.json().catch(() => null);
      if (response.status === 400 && answer && Array.isArray(answer.detail)) {
        showErrors(serverErrors(answer.detail));
      } else if (!response.ok) {
        const reason = (answer && answer.error) || `the service answered ${response.status}`;
        showErrors([{ field: null, message: `The service could not give a prognosis: ${reason}.` }]);
      } else {
        lastPatient = body;
        render(answer);
      }
    } catch (error) {
      const message = error instanceof TokenMissing ? error.message : `The service could not be reached (${error.message}).`;
      showErrors([{ field: null, message }]);
    } finally {
      setBusy(false);
    }
  }

  function setBusy(busy) {
    submitButton.disabled = busy;
    submitButton.textContent = busy ? "Estimating…" : "Estimate prognosis";
    $("results").setAttribute("aria-busy", String(busy));
    if (busy) status.textContent = "Estimating the prognosis…";
  }

  // ---- Formatting ---------------------------------------------------------------------------

  function text(tag, content, className) {
    const element = document.createElement(tag);
    if (content !== undefined && content !== null) element.textContent = content;
    if (className) element.className = className;
    return element;
  }

  const lower = (label) => label.charAt(0).toLowerCase() + label.slice(1);
  const unitText = (field) => (field.unit ? ` ${field.unit}` : "");
  const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);

  function pct(p) {
    if (p === null || p === undefined) return "–";
    const value = p * 100;
    if (value > 0 && value < 0.1) return "<0.1 %";
    return `${value.toFixed(value < 10 ? 1 : 0)} %`;
  }

  function pctRange(s) {
    const bound = (p) => {
      const value = p * 100;
      if (value > 0 && value < 0.1) return "<0.1";
      return value.toFixed(value < 10 ? 1 : 0);
    };
    return `${bound(s.lower)}–${bound(s.upper)}`;
  }

  function months(value) {
    return value === null || value === undefined ? ">120" : value.toFixed(1);
  }

  function medianText(median) {
    if (!median.reached) return "not reached";
    return `${months(median.value)} mo`;
  }

  function medianRange(median) {
    return `${months(median.lower)}–${months(median.upper)}`;
  }

  function signed(value, digits, unit) {
    const sign = value > 0 ? "+" : value < 0 ? "−" : "±";
    return `${sign}${Math.abs(value).toFixed(digits)}${unit}`;
  }

  // ---- Rendering ----------------------------------------------------------------------------

  function render(prognosis) {
    const planned = prognosis.patient_summary.modality;
    $("results-body").hidden = false;
    for (const element of document.querySelectorAll(".planned-name")) {
      element.textContent = prognosis.patient_summary.planned_modality_given ? `${planned} (planned)` : `${planned} (reference)`;
    }
    $("report-date").textContent = `Generated ${new Date().toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}`;
    renderDisclaimer(prognosis);
    renderInputs(prognosis);
    renderKeyFigures(prognosis);
    lastPrognosis = prognosis;
    renderCharts(prognosis);
    renderIncidenceTable(prognosis);
    renderBaseline(prognosis);
    renderTables(prognosis);
    renderWarnings(prognosis);
    renderProvenance(prognosis);
    if (window.netprogViews) window.netprogViews.render(prognosis);
    const hpfs = prognosis.hpfs.median_months;
    const os = prognosis.os.median_months;
    status.textContent = `Prognosis ready under ${planned}: median HPFS ${medianText(hpfs)}, median OS ${medianText(os)}.`;
    // Keyboard and screen-reader users land on the prognosis; on a tablet it is below the form.
    $("results").focus();
  }

  function renderDisclaimer(prognosis) {
    const synthetic = prognosis.model.trained_on === "synthetic";
    const box = $("result-disclaimer");
    box.classList.toggle("synthetic", synthetic);
    $("result-disclaimer-text").innerHTML = "";
    $("result-disclaimer-text").append(
      text("strong", synthetic ? "Trained on synthetic data: not for clinical use. " : "Trained on real data: decision support only. "),
      document.createTextNode(prognosis.disclaimer),
    );
    setTrainingBanner(prognosis.model.trained_on, prognosis.disclaimer);
  }

  function renderInputs(prognosis) {
    const list = $("inputs-list");
    list.innerHTML = "";
    for (const field of fields) {
      const source = field.scope === "patient" ? lastPatient.patient : lastPatient;
      const value = source[field.name];
      const missing = value === undefined || value === null;
      if (missing && field.scope !== "patient") continue;
      let shown;
      if (missing) {
        shown = "not recorded";
      } else if (typeof value === "boolean") {
        shown = value ? "yes" : "no";
      } else if (field.control === "select") {
        shown = (field.options.find(([v]) => v === value) || [value, value])[1];
      } else {
        shown = `${value}${unitText(field)}`;
      }
      const item = document.createElement("div");
      item.append(text("dt", field.label), text("dd", shown));
      list.append(item);
    }
    const s = prognosis.patient_summary;
    const imputed = s.imputed_fields || [];
    const grade = s.grade_source === "imputed" ? "not recorded (imputed)" : s.grade_source === "ki67_percent" ? `${s.who_grade} (derived from Ki-67)` : s.who_grade;
    const burden = imputed.includes("tumor_burden_percent") ? "not recorded (imputed)" : `${s.burden_category} % of liver volume`;
    $("patient-summary").textContent = `Model categories: grade ${grade} · tumour burden ${burden} · prognosis for ${s.modality}${s.planned_modality_given ? "" : " (no modality planned: TACE as reference, all three compared)"}.`;
  }

  function renderKeyFigures(prognosis) {
    const cards = $("key-figures");
    cards.innerHTML = "";
    for (const endpoint of ENDPOINTS) {
      const block = prognosis[endpoint.key];
      const card = text("article", null, `card card-${endpoint.key}`);
      card.setAttribute("aria-label", `${endpoint.name} under ${block.modality}`);
      card.append(text("h4", `${endpoint.short} · ${endpoint.name}`));
      const median = block.median_months;
      const big = text("p", null, "median");
      big.append(text("span", "Median ", "median-label"), text("strong", medianText(median)));
      if (median.reached) big.append(text("span", ` (95 % interval ${medianRange(median)})`, "interval"));
      if (median.extrapolated) big.append(text("span", " † extrapolated", "flag"));
      card.append(big);
      const row = text("dl", null, "horizons");
      for (const h of HORIZONS) {
        const s = block.survival_at[h];
        const item = document.createElement("div");
        item.append(text("dt", HORIZON_TEXT[h]));
        const dd = text("dd", pct(s.value));
        if (s.extrapolated) dd.append(text("span", " †", "flag"));
        dd.append(text("span", ` ${pctRange(s)}`, "interval"));
        item.append(dd);
        row.append(item);
      }
      card.append(row);
      const notes = text("p", null, "card-note");
      notes.append(document.createTextNode(`Probability ${endpoint.free} at each time, 95 % interval below it. Risk percentile ${block.risk_percentile.toFixed(0)}: a higher hazard than ${block.risk_percentile.toFixed(0)} % of training patients.`));
      if (block.check_model) {
        const check = block.check_model;
        const agree = check.models_disagree ? "⚠ the models disagree" : "the models agree";
        notes.append(document.createElement("br"), document.createTextNode(`Check model (${check.model}): median ${check.median_months.reached ? `${months(check.median_months.value)} mo` : "not reached"}; ${agree}.`));
      }
      if (block.conditional) {
        const c = block.conditional;
        notes.append(document.createElement("br"), document.createTextNode(`Still ${endpoint.free} at ${c.months_since_treatment} months: median ${medianText(c.median_months)} since treatment${c.median_remaining_months !== null ? `, ${c.median_remaining_months.toFixed(1)} months still ahead` : ""}.`));
      }
      card.append(notes);
      cards.append(card);
    }
  }

  function renderCharts(prognosis) {
    const xmax = axisEnd(prognosis);
    for (const endpoint of ENDPOINTS) {
      const block = prognosis[endpoint.key];
      survivalChart(endpoint, block, xmax[endpoint.key]);
      atRiskRow(endpoint, block, xmax[endpoint.key]);
      modalityChart(endpoint, block, xmax[endpoint.key]);
      explanationChart(endpoint, block.explanation);
    }
    const uncertainty = prognosis.model.uncertainty ? ` ${prognosis.model.uncertainty.text}` : "";
    $("interval-method").textContent =
      (prognosis.hpfs.interval_method || "bootstrap percentile") + uncertainty;
    incidenceChart(prognosis, xmax.hpfs);
  }

  // The counts sit under the x axis at their months, as under a published Kaplan-Meier figure:
  // the row spans the plot area (the chart's margins), each count placed at month / xmax.
  function atRiskRow(endpoint, block, xmax) {
    const table = $(`at-risk-${endpoint.key}`);
    table.innerHTML = "";
    const counts = (block.numbers_at_risk || []).filter((n) => n.month <= xmax);
    table.hidden = counts.length === 0;
    if (!counts.length) return;
    const margin = printing ? { l: 36, r: 6 } : { l: 52, r: 12 };
    table.append(text("caption", `${endpoint.short}: training patients at risk by month since embolotherapy`, "visually-hidden"));
    const body = document.createElement("tbody");
    const row = document.createElement("tr");
    row.style.marginLeft = `${margin.l}px`;
    row.style.marginRight = `${margin.r}px`;
    const label = text("th", "Number at risk");
    label.scope = "row";
    label.style.left = `-${margin.l}px`;
    row.append(label);
    for (const { month, at_risk: atRisk } of counts) {
      const cell = text("td", String(atRisk));
      cell.dataset.month = String(month);
      cell.style.left = `${(100 * month) / xmax}%`;
      cell.setAttribute("aria-label", `${atRisk} at ${month} months`);
      row.append(cell);
    }
    body.append(row);
    table.append(body);
  }

  function incidenceChart(prognosis, xmax) {
    const incidence = prognosis.hepatic_progression;
    $("incidence-block").hidden = !incidence;
    if (!incidence) return;
    const style = STYLE[incidence.modality];
    const curve = incidence.curve;
    const x = curve.map((p) => p.month);
    const traces = [
      { x, y: curve.map((p) => p.upper), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      {
        x, y: curve.map((p) => p.lower), mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: style.fill,
        name: "95 % interval", hoverinfo: "skip",
      },
      {
        x, y: curve.map((p) => p.incidence), mode: "lines+markers", name: incidence.modality,
        line: { color: style.color, width: 2.5, dash: style.dash },
        marker: { symbol: style.symbol, color: style.color, size: curve.map((p) => (p.month % 12 === 0 && p.month > 0 ? 7 : 0)) },
        customdata: curve.map((p) => [p.lower, p.upper]),
        hovertemplate: `${incidence.modality}: %{y:.1%} (%{customdata[0]:.1%}–%{customdata[1]:.1%})<extra></extra>`,
      },
    ];
    legend("legend-incidence", [
      { key: swatch(incidence.modality), label: incidence.modality },
      { key: bandKey(incidence.modality), label: "95 % interval" },
    ]);
    const layout = baseLayout(INCIDENCE, xmax, prognosis.hpfs.extrapolated_from_month);
    const label = `${capital(incidence.measure)} under ${incidence.modality}: ${HORIZONS.map((h) => `${HORIZON_TEXT[h]} ${pct(incidence.cumulative_incidence_at[h].value)}`).join(", ")}.`;
    plot("chart-incidence", traces, layout, label);
  }

  function renderIncidenceTable(prognosis) {
    const incidence = prognosis.hepatic_progression;
    const table = $("incidence-table");
    table.innerHTML = "";
    $("incidence-note").textContent = "";
    if (!incidence) return;
    table.append(text("caption", `${capital(incidence.measure)}, with 95 % intervals`));
    const head = document.createElement("thead");
    const headRow = document.createElement("tr");
    for (const title of ["Modality", ...HORIZONS.map((h) => HORIZON_TEXT[h])]) {
      const th = text("th", title);
      th.scope = "col";
      headRow.append(th);
    }
    head.append(headRow);
    table.append(head);
    const body = document.createElement("tbody");
    let footnote = false;
    for (const entry of incidence.modalities) {
      const row = document.createElement("tr");
      const planned = entry.modality === incidence.modality;
      if (planned) row.className = "planned";
      const name = text("th", null, "modality-name");
      name.scope = "row";
      name.append(swatch(entry.modality), document.createTextNode(entry.modality));
      if (planned) name.append(text("span", prognosis.patient_summary.planned_modality_given ? " planned" : " reference", "tag"));
      row.append(name);
      for (const h of HORIZONS) {
        const s = entry.cumulative_incidence_at[h];
        row.append(horizonCell(s));
        footnote = footnote || s.extrapolated;
      }
      body.append(row);
    }
    table.append(body);
    const note = `${incidence.note} Intervals: ${incidence.interval_method}.${footnote ? " † Beyond the training cohort's adequate follow-up: extrapolated by the model." : ""}`;
    $("incidence-note").textContent = note;
  }

  function axisEnd(prognosis) {
    const ends = {};
    for (const endpoint of ENDPOINTS) {
      let end = 36;
      for (const entry of prognosis[endpoint.key].modalities) {
        const point = entry.curve.find((p) => p.upper < 0.03);
        end = Math.max(end, point ? point.month : 120);
      }
      ends[endpoint.key] = Math.min(120, Math.ceil(end / 12) * 12);
    }
    return ends;
  }

  function baseLayout(endpoint, xmax, extrapolatedFrom) {
    const layout = {
      font: { family: FONT, size: 12, color: "#1f2937" },
      margin: { l: 52, r: 12, t: 10, b: 42 },
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      xaxis: {
        title: { text: "Months since embolotherapy", standoff: 6 },
        range: [0, xmax], dtick: 12, zeroline: false, gridcolor: "#e5e7eb", linecolor: "#9ca3af", ticks: "outside",
      },
      yaxis: {
        title: { text: printing ? endpoint.axisPrint : endpoint.axis, standoff: 4, font: { size: 11 } },
        range: [0, 1.02], tickformat: ".0%", dtick: 0.25, gridcolor: "#e5e7eb", linecolor: "#9ca3af", zeroline: false,
      },
      // The legend is HTML in the figure's caption, where it never hides a curve.
      showlegend: false,
      hovermode: "x unified",
      shapes: [],
      annotations: [],
    };
    if (extrapolatedFrom !== null && extrapolatedFrom !== undefined && extrapolatedFrom < xmax) {
      layout.shapes.push({
        type: "rect", xref: "x", yref: "paper", x0: extrapolatedFrom, x1: xmax, y0: 0, y1: 1,
        fillcolor: "rgba(107,114,128,0.12)", line: { width: 0 }, layer: "below",
      });
      layout.annotations.push({
        xref: "x", yref: "paper", x: (extrapolatedFrom + xmax) / 2, y: 0.03, yanchor: "bottom",
        text: "extrapolated<br>beyond follow-up", showarrow: false, font: { size: 10, color: "#4b5563" },
      });
    }
    return layout;
  }

  function plot(id, traces, layout, label) {
    const element = $(id);
    element.setAttribute("aria-label", label);
    const explain = element.classList.contains("chart-explain");
    const shown = printing ? forPrint(traces, layout, explain) : { traces, layout };
    return Plotly.react(element, shown.traces, shown.layout, { displayModeBar: false, responsive: !printing, displaylogo: false });
  }

  function forPrint(traces, layout, explain) {
    const size = PRINT_CHART.font;
    const smaller = (font) => ({ ...(font || {}), size: size - 0.5 });
    const axis = (a) => ({ ...a, tickfont: { ...(a.tickfont || {}), size }, title: a.title && { ...a.title, font: { size } } });
    return {
      traces: traces.map((t) => (t.textfont ? { ...t, textfont: smaller(t.textfont) } : t)),
      layout: {
        ...layout,
        width: PRINT_CHART.width,
        height: explain ? PRINT_CHART.explainHeight : PRINT_CHART.height,
        font: { ...layout.font, family: PRINT_FONT, size },
        margin: explain ? { l: 4, r: 6, t: 14, b: 26 } : { l: 36, r: 6, t: 4, b: 26 },
        xaxis: axis(layout.xaxis),
        yaxis: axis(layout.yaxis),
        annotations: (layout.annotations || []).map((a) => ({ ...a, font: smaller(a.font) })),
      },
    };
  }

  const beyond = (block, month) => block.extrapolated_from_month !== null && month >= block.extrapolated_from_month;

  function swatch(modality) {
    const holder = text("span", null, "key");
    holder.setAttribute("aria-hidden", "true");
    const glyph = text("span", STYLE[modality].glyph, "glyph");
    glyph.style.color = STYLE[modality].color;
    holder.append(text("span", null, `swatch swatch-${modality}`), glyph);
    return holder;
  }

  function legend(id, items) {
    const holder = $(id);
    holder.innerHTML = "";
    for (const item of items) {
      const entry = text("span", null, "legend-item");
      entry.append(item.key, document.createTextNode(item.label));
      holder.append(entry);
    }
  }

  function bandKey(modality) {
    const key = text("span", null, "band");
    key.style.background = STYLE[modality].fill;
    key.style.borderColor = STYLE[modality].color;
    return key;
  }

  function survivalChart(endpoint, block, xmax) {
    const style = STYLE[block.modality];
    const curve = block.curve;
    const x = curve.map((p) => p.month);
    const horizonPoints = HORIZONS.map((h) => curve.find((p) => p.month === Number(h))).filter(Boolean);
    const traces = [
      { x, y: curve.map((p) => p.upper), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      {
        x, y: curve.map((p) => p.lower), mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: style.fill,
        name: "95 % interval", hoverinfo: "skip",
      },
      {
        x, y: curve.map((p) => p.survival), mode: "lines", name: block.modality,
        line: { color: style.color, width: 2.5, dash: style.dash },
        customdata: curve.map((p) => [p.lower, p.upper]),
        hovertemplate: `${block.modality}: %{y:.1%} (%{customdata[0]:.1%}–%{customdata[1]:.1%})<extra></extra>`,
      },
      {
        x: horizonPoints.map((p) => p.month), y: horizonPoints.map((p) => p.survival),
        mode: "markers+text", text: horizonPoints.map((p) => (beyond(block, p.month) ? "" : pct(p.survival))),
        textposition: horizonPoints.map((p) => (p.month > xmax - 8 ? "top left" : "top right")),
        textfont: { size: 10, color: "#374151" }, cliponaxis: false,
        marker: { color: style.color, symbol: style.symbol, size: 7 }, showlegend: false, hoverinfo: "skip",
      },
    ];
    if (block.conditional) {
      const c = block.conditional.curve;
      traces.push({
        x: c.map((p) => p.month), y: c.map((p) => p.survival), mode: "lines",
        name: `if still ${endpoint.free} at ${block.conditional.months_since_treatment} mo`,
        line: { color: "#111827", width: 2, dash: "longdash" },
      });
    }
    const keys = [
      { key: swatch(block.modality), label: block.modality },
      { key: bandKey(block.modality), label: "95 % interval" },
    ];
    if (block.conditional) {
      keys.push({ key: text("span", null, "swatch swatch-conditional"), label: `if still ${endpoint.free} at ${block.conditional.months_since_treatment} mo` });
    }
    legend(`legend-survival-${endpoint.key}`, keys);
    const layout = baseLayout(endpoint, xmax, block.extrapolated_from_month);
    const median = block.median_months;
    if (median.reached && median.value <= xmax) {
      layout.shapes.push(
        { type: "line", x0: 0, x1: median.value, y0: 0.5, y1: 0.5, line: { color: "#6b7280", width: 1, dash: "dot" } },
        { type: "line", x0: median.value, x1: median.value, y0: 0, y1: 0.5, line: { color: "#6b7280", width: 1, dash: "dot" } },
      );
      layout.annotations.push({
        x: median.value, y: 0, text: `median ${months(median.value)} mo`, showarrow: false,
        xanchor: "left", yanchor: "bottom", xshift: 3, yshift: 2, font: { size: 10, color: "#374151" },
      });
    }
    const label = `${endpoint.name} under ${block.modality}: median ${medianText(median)}; ${HORIZONS.map((h) => `${HORIZON_TEXT[h]} ${pct(block.survival_at[h].value)}`).join(", ")}.`;
    plot(`chart-survival-${endpoint.key}`, traces, layout, label);
  }

  function modalityChart(endpoint, block, xmax) {
    const traces = block.modalities.map((entry) => {
      const style = STYLE[entry.modality];
      const warn = entry.support.extrapolation ? " ⚠ extrapolation" : "";
      return {
        x: entry.curve.map((p) => p.month),
        y: entry.curve.map((p) => p.survival),
        mode: "lines+markers",
        name: `${entry.modality}${entry.planned ? " (planned)" : ""}${warn}`,
        line: { color: style.color, width: entry.planned ? 3 : 2, dash: style.dash },
        marker: {
          symbol: style.symbol, color: style.color, size: entry.curve.map((p) => (p.month % 12 === 0 && p.month > 0 ? 7 : 0)),
        },
        opacity: entry.support.extrapolation ? 0.75 : 1,
        hovertemplate: `${entry.modality}: %{y:.1%}<extra></extra>`,
      };
    });
    legend(`legend-modalities-${endpoint.key}`, block.modalities.map((entry) => ({
      key: swatch(entry.modality),
      label: `${entry.modality}${entry.planned ? " (planned)" : ""}${entry.support.extrapolation ? " ⚠" : ""}`,
    })));
    const layout = baseLayout(endpoint, xmax, block.extrapolated_from_month);
    const label = `${endpoint.name} by modality: ${block.modalities.map((m) => `${m.modality} median ${medianText(m.median_months)}${m.support.extrapolation ? " (extrapolation)" : ""}`).join("; ")}.`;
    plot(`chart-modalities-${endpoint.key}`, traces, layout, label);
  }

  function logTicks(range) {
    const span = range[1] - range[0];
    const ladders = [
      [0.5, 0.67, 1, 1.5, 2],
      [0.25, 0.5, 1, 2, 4],
      [0.1, 0.2, 0.5, 1, 2, 5, 10],
      [0.01, 0.1, 1, 10, 100],
    ];
    const ladder = span < 0.9 ? ladders[0] : span < 1.6 ? ladders[1] : span < 3 ? ladders[2] : ladders[3];
    return ladder.filter((t) => Math.log10(t) >= range[0] && Math.log10(t) <= range[1]);
  }

  const arrow = (ratio) => (Math.abs(Math.log(ratio)) < 0.005 ? "" : ratio > 1 ? " ▲" : " ▼");

  function explanationChart(endpoint, explanation) {
    const items = explanation.items;
    const labels = items.map((i) => capital(i.label));
    const ratios = items.map((i) => i.hazard_ratio);
    const lo = Math.min(0.8, ...ratios);
    const hi = Math.max(1.25, ...ratios);
    // Room on each side for the "×0.75 ▼" labels outside the bars, in proportion to the span.
    const span = Math.log10(hi) - Math.log10(lo);
    const pad = Math.max(0.16, 0.32 * span);
    const range = [Math.log10(lo) - pad, Math.log10(hi) + pad];
    const ticks = logTicks(range);
    const traces = [{
      type: "bar", orientation: "h", y: labels, base: items.map(() => 1), x: ratios.map((r) => r - 1),
      marker: { color: ratios.map((r) => (r >= 1 ? RAISES : LOWERS)), line: { width: 0 } },
      text: ratios.map((r) => `×${r.toFixed(2)}${arrow(r)}`), textposition: "outside",
      textfont: { size: 10.5, color: "#111827" }, cliponaxis: false,
      customdata: items.map((i) => [i.contribution, i.hazard_ratio]),
      hovertemplate: "%{y}: ×%{customdata[1]:.3f} hazard (contribution %{customdata[0]:+.3f} on the log relative hazard)<extra></extra>",
      showlegend: false,
    }];
    const layout = {
      font: { family: FONT, size: 11, color: "#1f2937" },
      margin: { l: 8, r: 12, t: 24, b: 40 },
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      bargap: 0.28,
      xaxis: {
        type: "log", range, tickvals: ticks, ticktext: ticks.map((t) => `×${t}`), gridcolor: "#e5e7eb",
        title: { text: "Hazard multiplier (log scale)", standoff: 4 }, zeroline: false,
      },
      yaxis: { autorange: "reversed", automargin: true, ticks: "", tickfont: { size: 11 } },
      shapes: [{ type: "line", xref: "x", yref: "paper", x0: 1, x1: 1, y0: 0, y1: 1, line: { color: "#374151", width: 1.2 } }],
      annotations: [
        { xref: "x", yref: "paper", x: Math.log10(1), y: 1, yanchor: "bottom", xanchor: "left", xshift: 4, text: "raises hazard ▲", showarrow: false, font: { size: 10, color: RAISES } },
        { xref: "x", yref: "paper", x: Math.log10(1), y: 1, yanchor: "bottom", xanchor: "right", xshift: -4, text: "▼ lowers hazard", showarrow: false, font: { size: 10, color: LOWERS } },
      ],
    };
    const top = items.slice(0, 3).map((i) => `${i.label} ×${i.hazard_ratio.toFixed(2)}`).join("; ");
    plot(`chart-explain-${endpoint.key}`, traces, layout, `${endpoint.short} explanation, largest factors first: ${top}.`);
    $(`baseline-${endpoint.key}`).textContent = `All factors together: ×${explanation.hazard_ratio_vs_baseline.toFixed(2)} the baseline hazard of ${endpoint.event}.`;
    explanationTable(endpoint, explanation);
  }

  function renderBaseline(prognosis) {
    const baselines = ENDPOINTS.map((e) => prognosis[e.key].explanation.baseline);
    $("baseline-shared").textContent = baselines[0] === baselines[1]
      ? `Baseline: ${baselines[0]}`
      : ENDPOINTS.map((e, i) => `${e.short} baseline: ${baselines[i]}`).join(" ");
  }

  function explanationTable(endpoint, explanation) {
    const holder = $("explain-tables");
    const old = $(`explain-table-${endpoint.key}`);
    if (old) old.remove();
    const table = text("table");
    table.id = `explain-table-${endpoint.key}`;
    table.append(text("caption", `${endpoint.short} explanation: SHAP contributions to the log relative hazard against the baseline, as hazard-ratio multipliers, largest first`));
    const head = document.createElement("tr");
    head.append(text("th", "Factor"), text("th", "Hazard-ratio multiplier"), text("th", "Contribution (log relative hazard)"));
    table.append(head);
    for (const item of explanation.items) {
      const row = document.createElement("tr");
      row.append(text("td", capital(item.label)), text("td", `×${item.hazard_ratio.toFixed(3)}`), text("td", item.contribution.toFixed(4)));
      table.append(row);
    }
    holder.append(table);
  }

  function renderTables(prognosis) {
    const holder = $("modality-tables");
    holder.innerHTML = "";
    let footnote = false;
    for (const endpoint of ENDPOINTS) {
      const block = prognosis[endpoint.key];
      const table = text("table", null, "modality-table");
      table.id = `modality-table-${endpoint.key}`;
      table.append(text("caption", `${endpoint.short}: median months and probability ${endpoint.free}, with 95 % intervals`));
      const head = document.createElement("thead");
      const headRow = document.createElement("tr");
      for (const title of ["Modality", "Median (months)", ...HORIZONS.map((h) => HORIZON_TEXT[h]), "Gain to 5 y vs planned", "Training support"]) {
        const th = text("th", title);
        if (title === "Training support") th.append(text("span", " (similar · propensity)", "print-only"));
        th.scope = "col";
        headRow.append(th);
      }
      head.append(headRow);
      table.append(head);
      const bodyRows = document.createElement("tbody");
      for (const entry of block.modalities) {
        const row = document.createElement("tr");
        if (entry.planned) row.className = "planned";
        if (entry.support.extrapolation) row.classList.add("extrapolated");
        const name = text("th", null, "modality-name");
        name.scope = "row";
        name.append(swatch(entry.modality), document.createTextNode(entry.modality));
        if (entry.planned) name.append(text("span", " planned", "tag"));
        row.append(name);
        const median = entry.median_months;
        const medianCell = text("td", median.reached ? months(median.value) : "not reached", "num");
        if (median.reached) medianCell.append(text("span", ` ${medianRange(median)}`, "interval"));
        row.append(medianCell);
        for (const h of HORIZONS) {
          const s = entry.survival_at[h];
          row.append(horizonCell(s));
          footnote = footnote || s.extrapolated;
        }
        const diff = entry.difference_vs_planned;
        if (diff) {
          const d = diff.rmst_60_months;
          const cell = text("td", signed(d.value, 1, " mo"), "num");
          cell.append(text("span", ` ${signed(d.lower, 1, "")} to ${signed(d.upper, 1, "")}`, "interval"));
          row.append(cell);
        } else {
          row.append(text("td", "reference", "num muted"));
        }
        const support = entry.support;
        const supportCell = text("td", null, support.extrapolation ? "support warn" : "support ok");
        supportCell.append(
          text("span", support.extrapolation ? "⚠ Extrapolation" : "✓ Supported", "support-flag"),
          text("span", ` ${support.similar_treated} similar · propensity ${support.propensity.toFixed(2)}`, "interval screen-only"),
          text("span", ` ${support.similar_treated} · ${support.propensity.toFixed(2)}`, "interval print-only"),
        );
        row.append(supportCell);
        bodyRows.append(row);
      }
      table.append(bodyRows);
      holder.append(table);
    }
    const notes = $("support-warnings");
    notes.innerHTML = "";
    if (footnote) notes.append(text("li", "† Beyond the training cohort's adequate follow-up: extrapolated by the model.", "footnote"));
    // Support depends on the patient's baseline factors, not on the endpoint: one line per
    // modality and message, naming the endpoints it concerns.
    const flagged = new Map();
    for (const endpoint of ENDPOINTS) {
      for (const entry of prognosis[endpoint.key].modalities) {
        if (!entry.support.extrapolation) continue;
        const key = `${entry.modality}\u0000${entry.support.warning || ""}`;
        if (!flagged.has(key)) flagged.set(key, { modality: entry.modality, warning: entry.support.warning || "", endpoints: [] });
        flagged.get(key).endpoints.push(endpoint.short);
      }
    }
    if (flagged.size) {
      const names = [...new Set([...flagged.values()].map((f) => f.modality))].join(", ");
      notes.append(text("li", `⚠ Extrapolation, ${names}: too few similar training patients received it; the prediction is the model's extrapolation.`, "warn print-only"));
    }
    for (const { modality, warning, endpoints } of flagged.values()) {
      const item = text("li", null, "warn screen-only");
      item.append(text("span", "⚠ ", "icon"), text("strong", `${modality} (${endpoints.join(" and ")}): extrapolation. `), document.createTextNode(warning));
      notes.append(item);
    }
    if (flagged.size === 0) {
      notes.append(text("li", "✓ Each modality was received by enough training patients like this one: no comparison here is extrapolation.", "ok"));
    }
    notes.append(text("li", "Support: training patients with the same grade and burden category who received the modality (“similar”), and the modelled probability (propensity) of receiving it. Gain to 5 y: difference from the planned modality in restricted mean months free of the event over the first 5 years, with paired 95 % interval.", "note"));
    $("caveat-text").textContent = prognosis.hpfs.modalities[0].caveat;
  }

  function renderWarnings(prognosis) {
    const list = $("warnings");
    list.innerHTML = "";
    const shown = prognosis.warnings.filter((w) => w.code !== "synthetic_training_data" && w.code !== "modality_extrapolated");
    for (const warning of shown) {
      const item = text("li", null, "warn");
      item.append(text("span", "⚠ ", "icon"), document.createTextNode(warning.message));
      list.append(item);
    }
    $("warnings-block").hidden = shown.length === 0;
  }

  function renderProvenance(prognosis) {
    const model = prognosis.model;
    const footer = $("provenance");
    footer.innerHTML = "";
    const families = ENDPOINTS.map((e) => `${e.short} ${model.primary_model[e.key]} (check ${model.check_model[e.key] || "none"}, ${model.n_bootstrap[e.key]} bootstrap refits)`).join("; ");
    footer.append(
      text("span", `Model ${model.tag || "unregistered"}`, "strong"),
      document.createTextNode(` · trained on ${model.trained_on} data${model.trained_at ? ` on ${model.trained_at.slice(0, 10)}` : ""} · data fingerprint ${(model.data_fingerprint || "none").slice(0, 12)} · patient schema v${model.schema_version} · ${families} · prediction ${prognosis.prediction_id}`),
    );
  }

  // ---- Printing -----------------------------------------------------------------------------

  function beforePrint() {
    if (printing || !lastPrognosis) return;
    printing = true;
    renderCharts(lastPrognosis);
  }

  function afterPrint() {
    if (!printing) return;
    printing = false;
    renderCharts(lastPrognosis);
  }

  // ---- Filled in from a link ----------------------------------------------------------------
  // A CDS Hooks card links to this page with the patient's fields as query parameters, named as
  // the fields (docs/ehr-integration.md). They fill the form, nothing is sent until the
  // clinician presses Estimate, and the query is taken off the address so that the patient's
  // values do not stay in the tab's history.

  function fillFromLink() {
    const params = new URLSearchParams(window.location.search);
    let filled = 0;
    for (const field of fields) {
      if (!params.has(field.name)) continue;
      const control = $(field.id);
      if (field.control === "checkbox") control.checked = params.get(field.name) === "true";
      else control.value = params.get(field.name);
      filled += 1;
    }
    if (window.location.search) {
      history.replaceState(null, "", window.location.pathname + window.location.hash);
    }
    if (filled) {
      status.textContent = `${filled} fields filled in from the link: check them, then estimate the prognosis.`;
    }
  }

  // ---- Start --------------------------------------------------------------------------------

  form.addEventListener("submit", submit);
  form.addEventListener("reset", () => {
    clearErrors();
    status.textContent = "Form cleared.";
  });
  $("print-button").addEventListener("click", () => window.print());
  window.addEventListener("beforeprint", beforePrint);
  window.addEventListener("afterprint", afterPrint);
  window.netprog = { beforePrint, afterPrint };
  fillFromLink();
  if (typeof Plotly === "undefined") {
    status.textContent = "The charting library did not load: the service cannot draw charts. Ask the administrator to install plotly.";
  }
  loadModel();
})();
