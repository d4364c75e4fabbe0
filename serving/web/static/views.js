/* What a clinician and a patient can read: "out of 100" icon arrays, plain words, the
   procedure's published harms, contributions over time, patients like this one, the
   clinician/patient switch and the printable patient handout. Everything is drawn from the
   service's answer (app.js calls netprogViews.render); nothing is fetched from elsewhere.
   SPDX-License-Identifier: GPL-3.0-or-later */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const YEARS = { 12: "1 year", 24: "2 years", 36: "3 years" };
  const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
  const PLAIN_NAMES = {
    TACE: "chemoembolisation (TACE)",
    TAE: "bland embolisation (TAE)",
    SIRT: "radioembolisation (SIRT)",
  };
  // Okabe-Ito colours; "died" is drawn as an outline, so the states differ by more than colour.
  const STATES = [
    { key: "progression_free", cls: "icon-free", clinician: "alive, free of hepatic progression", patient: "alive, liver tumours have not grown" },
    { key: "alive_after_progression", cls: "icon-progressed", clinician: "alive after hepatic progression", patient: "alive, liver tumours have grown" },
    { key: "died", cls: "icon-died", clinician: "died", patient: "died" },
  ];
  const UP = "#2166AC";
  const DOWN = "#B2182B";
  const CURVE_TEXT = {
    hpfs: "HPFS (alive without hepatic progression)",
    os: "overall survival",
    hepatic_progression: "cumulative incidence of hepatic progression",
  };

  let last = null;
  let mode = "clinician";

  function text(tag, content, className) {
    const element = document.createElement(tag);
    if (content !== undefined && content !== null) element.textContent = content;
    if (className) element.className = className;
    return element;
  }

  const ordered = (modalities) => [...modalities].sort((a, b) => Number(b.planned) - Number(a.planned));
  const points = (p) => (Math.abs(100 * p) < 0.05 ? "0.0" : `${p > 0 ? "+" : "−"}${Math.abs(100 * p).toFixed(1)}`);

  // ---- Icon arrays ----------------------------------------------------------------------------

  function person(state, x, y) {
    const group = document.createElementNS(SVG, "g");
    group.setAttribute("class", `icon ${state.cls}`);
    group.setAttribute("transform", `translate(${x} ${y})`);
    const head = document.createElementNS(SVG, "circle");
    head.setAttribute("cx", "5");
    head.setAttribute("cy", "3");
    head.setAttribute("r", "2.3");
    const body = document.createElementNS(SVG, "path");
    body.setAttribute("d", "M1.2 12.5 Q1.2 6.2 5 6.2 Q8.8 6.2 8.8 12.5 Z");
    group.append(head, body);
    return group;
  }

  function arrayLabel(modality, at, plain) {
    if (plain) {
      return `${PLAIN_NAMES[modality]}, after ${YEARS[at.month]}: out of 100 people, ${at.progression_free} alive and their liver tumours have not grown, ${at.alive_after_progression} alive but their liver tumours have grown, ${at.died} have died.`;
    }
    return `${modality}, ${at.text}`;
  }

  function iconArray(modality, at, plain, id) {
    const figure = text("figure", null, "icon-figure");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 130");
    svg.setAttribute("role", "img");
    svg.setAttribute("class", "icon-array");
    svg.setAttribute("aria-label", arrayLabel(modality, at, plain));
    svg.dataset.modality = modality;
    svg.dataset.month = String(at.month);
    if (id) svg.id = id;
    let index = 0;
    for (const state of STATES) {
      for (let n = 0; n < at[state.key]; n += 1, index += 1) {
        svg.append(person(state, (index % 10) * 10, Math.floor(index / 10) * 13));
      }
    }
    const caption = text("figcaption", null, "icon-caption");
    caption.append(
      text("strong", `After ${YEARS[at.month]}`),
      text("span", ` ${at.progression_free} · ${at.alive_after_progression} · ${at.died}`, "icon-counts"),
    );
    figure.append(svg, caption);
    return figure;
  }

  function renderLegend() {
    const legend = $("icon-legend");
    legend.innerHTML = "";
    for (const state of STATES) {
      const item = text("li");
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 10 13");
      svg.setAttribute("aria-hidden", "true");
      svg.setAttribute("class", "icon-key");
      svg.append(person(state, 0, 0));
      item.append(svg, text("span", mode === "patient" ? state.patient : state.clinician));
      legend.append(item);
    }
  }

  function renderArrays(prognosis) {
    const holder = $("icon-arrays");
    holder.innerHTML = "";
    const plain = mode === "patient";
    for (const entry of ordered(prognosis.out_of_100.modalities)) {
      const row = text("div", null, "icon-row");
      const name = plain ? PLAIN_NAMES[entry.modality] : entry.modality;
      row.append(text("h4", `${name}${entry.planned ? (plain ? " (planned for you)" : " (planned)") : ""}`));
      const arrays = text("div", null, "icon-set");
      for (const at of entry.at) arrays.append(iconArray(entry.modality, at, plain, `icons-${entry.modality}-${at.month}`));
      row.append(arrays);
      const words = text("ul", null, "icon-words");
      for (const at of entry.at) words.append(text("li", plain ? arrayLabel(entry.modality, at, true) : at.text));
      row.append(words);
      holder.append(row);
    }
    $("people-note").textContent = prognosis.out_of_100.note;
    renderLegend();
  }

  // ---- Plain words and harms ------------------------------------------------------------------

  function renderPlain(prognosis) {
    const words = prognosis.plain_language;
    $("plain-clinician").replaceChildren(...words.clinician.map((p) => text("p", p)));
    const patient = words.patient;
    $("plain-patient").replaceChildren(
      ...patient.treatments.map((p) => text("p", p)),
      text("p", patient.comparison_warning, "plain-warning"),
      text("p", patient.data_warning, "plain-warning"),
    );
  }

  function renderHarms(prognosis) {
    const harms = prognosis.procedure_harms;
    const table = $("harms-table");
    table.innerHTML = "";
    $("harms-block").hidden = !harms;
    if (!harms) return;
    const plain = mode === "patient";
    table.append(text("caption", plain ? "How often problems happened in a published group of patients" : "Published figures per procedure, with their source; population figures, not predictions for this patient"));
    const head = document.createElement("thead");
    const headRow = document.createElement("tr");
    for (const title of ["", ...harms.modalities.map((m) => m.modality)]) {
      const th = text("th", title || (plain ? "Risk" : "Measure"));
      th.scope = "col";
      headRow.append(th);
    }
    head.append(headRow);
    const body = document.createElement("tbody");
    harms.modalities[0].items.forEach((first, row) => {
      const tr = document.createElement("tr");
      const th = text("th", plain ? first.plain_label : first.label);
      th.scope = "row";
      tr.append(th);
      for (const entry of harms.modalities) {
        const item = entry.items[row];
        const cell = text("td", item.text, item.reported ? "num" : "num muted not-reported");
        cell.dataset.modality = entry.modality;
        cell.dataset.measure = item.measure;
        if (item.reported && !plain && item.note) cell.title = item.note;
        tr.append(cell);
      }
      body.append(tr);
    });
    table.append(head, body);
    const sources = harms.sources.map((s) => `${s.citation} (${s.population})`).join(" ");
    $("harms-source").textContent = plain
      ? `${prognosis.plain_language.patient.risks_note} Source: ${harms.sources.map((s) => s.short).join("; ")}. “not reported”: the studies behind this tool give no figure.`
      : `${harms.scope} Source: ${sources} “not reported”: none of the source studies reports the figure.`;
  }

  // ---- Contributions over time ----------------------------------------------------------------

  function timeChart(curve, at, range, incidence) {
    const items = [...at.items].reverse();
    const good = (c) => (incidence ? c < 0 : c > 0);
    const traces = [{
      type: "bar", orientation: "h",
      y: items.map((i) => i.label), x: items.map((i) => 100 * i.contribution),
      marker: { color: items.map((i) => (good(i.contribution) ? UP : DOWN)) },
      text: items.map((i) => points(i.contribution)), textposition: "outside", cliponaxis: false,
      hovertemplate: "%{y}: %{x:+.2f} points<extra></extra>", showlegend: false,
    }];
    const layout = {
      font: { family: FONT, size: 10, color: "#1f2937" },
      margin: { l: 8, r: 30, t: 8, b: 34 }, height: 300,
      paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
      xaxis: { range, zeroline: true, zerolinecolor: "#374151", gridcolor: "#e5e7eb", title: { text: "probability points", standoff: 2 } },
      yaxis: { automargin: true, tickfont: { size: 9.5 } },
    };
    const top = at.items.slice(0, 3).map((i) => `${i.label} ${points(i.contribution)}`).join("; ");
    const label = `${CURVE_TEXT[curve]} at ${YEARS[at.month]}: ${(100 * at.value).toFixed(1)} % against ${(100 * at.reference_value).toFixed(1)} % for the reference patient; largest contributions, in probability points: ${top}.`;
    const element = $(`chart-time-${at.month}`);
    element.setAttribute("aria-label", label);
    Plotly.react(element, traces, layout, { displayModeBar: false, responsive: true, displaylogo: false });
  }

  function timeTable(curve, at) {
    const table = text("table");
    table.append(text("caption", `Contributions to ${CURVE_TEXT[curve]} at ${YEARS[at.month]}, in probability points, largest first`));
    const head = document.createElement("tr");
    head.append(text("th", "Factor"), text("th", "Points"));
    table.append(head);
    for (const item of at.items) {
      const row = document.createElement("tr");
      row.append(text("td", item.label), text("td", points(item.contribution)));
      table.append(row);
    }
    return table;
  }

  function renderTime(prognosis) {
    const over = prognosis.contributions_over_time;
    $("time-block").hidden = !over || typeof Plotly === "undefined";
    if ($("time-block").hidden) return;
    const select = $("time-curve");
    for (const option of select.options) option.disabled = !over[option.value];
    if (!over[select.value]) select.value = "os";
    const curve = select.value;
    const block = over[curve];
    // One axis for the three horizons, with room outside the bars for their labels.
    const values = block.at.flatMap((a) => a.items.map((i) => 100 * i.contribution));
    const range = [Math.min(0, ...values) * 1.6 - 2, Math.max(0, ...values) * 1.6 + 2];
    for (const at of block.at) timeChart(curve, at, range, curve === "hepatic_progression");
    $("time-tables").replaceChildren(...block.at.map((at) => timeTable(curve, at)));
    const worse = curve === "hepatic_progression" ? "red: more progression" : "red: lower survival";
    $("time-note").textContent = `${over.reference} Each bar is one factor's exact Shapley contribution to ${block.measure} at that time (${worse}; blue: the opposite); together they add up to the difference from the reference patient. A factor can weigh more at 3 years than at 1, even under proportional hazards.`;
  }

  // ---- Patients like this one -----------------------------------------------------------------

  function similarChart(endpoint, prognosis, entry) {
    const model = prognosis[endpoint].curve;
    const last_month = entry.curve[entry.curve.length - 1].month;
    const traces = [
      { x: model.map((p) => p.month), y: model.map((p) => p.survival), mode: "lines", name: `model, this patient (${prognosis[endpoint].modality})`, line: { color: "#0072B2", width: 2.5 } },
      { x: entry.curve.map((p) => p.month), y: entry.curve.map((p) => p.survival), mode: "lines", line: { shape: "hv", color: "#D55E00", width: 2, dash: "dash" }, name: `${entry.n_patients} similar training patients (Kaplan–Meier)` },
    ];
    const layout = {
      font: { family: FONT, size: 10.5, color: "#1f2937" },
      margin: { l: 44, r: 10, t: 8, b: 36 }, height: 260,
      paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
      legend: { orientation: "h", y: -0.28, x: 0 },
      xaxis: { range: [0, Math.max(24, Math.min(120, last_month + 12))], dtick: 12, title: { text: "months", standoff: 2 }, gridcolor: "#e5e7eb" },
      yaxis: { range: [0, 1.02], tickformat: ".0%", gridcolor: "#e5e7eb" },
    };
    const at = (curve, month) => (curve.find((p) => p.month === month) || {}).survival;
    const label = `${endpoint.toUpperCase()}: ${entry.n_patients} similar training patients, Kaplan–Meier ${[12, 24, 36].filter((m) => at(entry.curve, m) !== undefined).map((m) => `${YEARS[m]} ${(100 * at(entry.curve, m)).toFixed(0)} %`).join(", ")}; the model's curve for this patient ${[12, 24, 36].map((m) => `${YEARS[m]} ${(100 * at(model, m)).toFixed(0)} %`).join(", ")}.`;
    const element = $(`chart-similar-${endpoint}`);
    element.setAttribute("aria-label", label);
    Plotly.react(element, traces, layout, { displayModeBar: false, responsive: true, displaylogo: false });
  }

  function renderSimilar(prognosis) {
    const similar = prognosis.similar_patients;
    $("similar-block").hidden = !similar || typeof Plotly === "undefined";
    if ($("similar-block").hidden) return;
    $("similar-rule").textContent = `Rule (k = ${similar.k}, shown only with at least ${similar.minimum} similar patients): ${similar.rule} ${similar.note}`;
    for (const endpoint of ["hpfs", "os"]) {
      const entry = similar[endpoint];
      const chart = $(`chart-similar-${endpoint}`);
      const note = $(`similar-${endpoint}-note`);
      chart.hidden = !entry.shown;
      if (!entry.shown) {
        note.textContent = entry.reason;
        continue;
      }
      similarChart(endpoint, prognosis, entry);
      note.textContent = `${entry.n_patients} patients, ${entry.n_events} events. Number at risk: ${entry.numbers_at_risk.map((n) => `${n.month} mo ${n.at_risk}`).join(" · ")}.`;
    }
  }

  // ---- The patient handout --------------------------------------------------------------------

  function handoutRisks(prognosis, planned) {
    const harms = prognosis.procedure_harms;
    if (!harms) return [];
    const entry = harms.modalities.find((m) => m.modality === planned);
    const list = text("ul", null, "handout-risks");
    for (const item of entry.items) {
      list.append(text("li", `${item.plain_label}: ${item.reported ? item.text.replace("% of procedures", "in 100 procedures").replace(/^([\d.]+) in/, "about $1 in") : "not reported in the studies behind this sheet"}`));
    }
    return [text("h2", "Risks of the procedure itself"), text("p", prognosis.plain_language.patient.risks_note), list];
  }

  function renderHandout(prognosis) {
    const handout = $("handout");
    const planned = ordered(prognosis.out_of_100.modalities)[0];
    const words = prognosis.plain_language.patient;
    const arrays = text("div", null, "handout-arrays");
    for (const at of planned.at) arrays.append(iconArray(planned.modality, at, true, `handout-icons-${at.month}`));
    const key = text("ul", null, "icon-legend");
    for (const state of STATES) {
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 10 13");
      svg.setAttribute("aria-hidden", "true");
      svg.setAttribute("class", "icon-key");
      svg.append(person(state, 0, 0));
      const item = text("li");
      item.append(svg, text("span", state.patient));
      key.append(item);
    }
    const others = ordered(prognosis.out_of_100.modalities).slice(1).map((m) => {
      const at = m.at[m.at.length - 1];
      return `With ${PLAIN_NAMES[m.modality]}: after ${YEARS[at.month]}, about ${at.alive} of 100 are alive.`;
    });
    handout.replaceChildren(
      text("h1", `What might happen after ${PLAIN_NAMES[planned.modality]}`),
      text("p", `For you and your family. Printed ${new Date().toLocaleDateString("en-GB", { dateStyle: "long" })}.`, "handout-date"),
      text("p", words.treatments[0], "handout-lead"),
      key,
      arrays,
      text("p", `Other treatments, for comparison. ${others.join(" ")}`),
      ...handoutRisks(prognosis, planned.modality),
      text("h2", "Please keep in mind"),
      text("p", words.data_warning, "handout-warning"),
      text("p", words.comparison_warning, "handout-warning"),
      text("p", "Talk with your care team about what these numbers mean for you."),
    );
  }

  // ---- View switch and printing ---------------------------------------------------------------

  function setMode(next) {
    mode = next;
    document.body.classList.toggle("patient-mode", mode === "patient");
    $("view-clinician").setAttribute("aria-pressed", String(mode === "clinician"));
    $("view-patient").setAttribute("aria-pressed", String(mode === "patient"));
    if (last) {
      renderArrays(last);
      renderHarms(last);
    }
  }

  function prepareHandout() {
    document.body.classList.add("print-handout");
  }

  function endHandout() {
    document.body.classList.remove("print-handout");
  }

  function render(prognosis) {
    last = prognosis;
    const views = Boolean(prognosis.out_of_100);
    for (const id of ["plain-block", "people-block", "harms-block"]) $(id).hidden = !views;
    $("handout-button").disabled = !views;
    if (!views) return;
    renderPlain(prognosis);
    renderArrays(prognosis);
    renderHarms(prognosis);
    renderTime(prognosis);
    renderSimilar(prognosis);
    renderHandout(prognosis);
  }

  $("view-clinician").addEventListener("click", () => setMode("clinician"));
  $("view-patient").addEventListener("click", () => setMode("patient"));
  $("handout-button").addEventListener("click", () => {
    prepareHandout();
    window.print();
  });
  $("time-curve").addEventListener("change", () => last && renderTime(last));
  window.addEventListener("afterprint", endHandout);
  window.netprogViews = { render, setMode, prepareHandout, endHandout };
})();
