"""The clinician form at `/`: its fields come from the schema, and in Chromium it draws the
prognosis, flags bad input next to its field, asks for a token and prints on one page."""

from __future__ import annotations

import json
import logging
import math
import re
from html.parser import HTMLParser

import pytest

from model.schema import BOOLEAN_FIELDS, IMPUTED_QUANTITIES, Patient
from serving.settings import hash_token
from tests.serving.conftest import example
from tests.serving.web_conftest import (
    ARTIFACTS,
    WebPage,
    chromium,
    page_opener,
    served,
)

TOKEN = "web-test-token"
READY = "Prognosis ready"
CHARTS = ("survival", "modalities", "explain")
A4_CONTENT = {"width": 718, "height": 1062}
"""A4 less the print stylesheet's margins (10 mm at the sides, 8 mm top and bottom), in CSS px."""
PRINTED = (
    "#result-disclaimer",
    "#inputs-list",
    "#key-figures",
    *(f"#chart-{kind}-{endpoint}" for kind in CHARTS for endpoint in ("hpfs", "os")),
    "#modality-table-hpfs",
    "#modality-table-os",
    "#caveat",
    "#provenance",
)


def js_fixed(value: float) -> str:
    """`value.toFixed(0)` as the page's script writes it: halves round up, where Python's
    format rounds them to even (90.5 is "91" on the page, "90" in an f-string)."""
    return str(math.floor(value + 0.5))


class FormControls(HTMLParser):
    """The patient form's controls (those with a `data-scope`) and the targets of labels."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, dict[str, str | None]] = {}
        self.options: dict[str, list[str]] = {}
        self.labelled: set[str] = set()
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("input", "select") and "data-scope" in attributes:
            self.controls[attributes["name"]] = {"tag": tag, **attributes}
            if tag == "select":
                self._select = attributes["name"]
                self.options[self._select] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append(attributes.get("value"))
        elif tag == "label" and attributes.get("for"):
            self.labelled.add(attributes["for"])

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def fill_g2_pancreas(page, *, age: str = "62", burden: str = "30") -> None:
    """A G2 pancreatic patient planned for TACE, entered as a clinician would."""
    page.fill("#field-age_years", age)
    page.select_option("#field-sex", "female")
    page.select_option("#field-who_grade", "G2")
    page.fill("#field-ki67_percent", "8")
    page.fill("#field-tumor_burden_percent", burden)
    page.select_option("#field-primary_site", "pancreas")
    for name in BOOLEAN_FIELDS:
        page.select_option(f"#field-{name}", "true" if name == "somatostatin_analog" else "false")
    page.select_option("#field-planned_modality", "TACE")


def submit_with_enter(page) -> None:
    page.focus("#field-tumor_burden_percent")
    page.keyboard.press("Enter")


def wait_for_results(page) -> None:
    page.wait_for_function(
        "ready => document.getElementById('status').textContent.startsWith(ready)",
        arg=READY,
        timeout=30_000,
    )


def trace_lengths(page, chart_id: str) -> list[int]:
    return page.evaluate(
        "id => document.getElementById(id).data.map(t => (t.x || []).length)", chart_id
    )


def expected_http_errors(web: WebPage, *statuses: int) -> None:
    """Drop Chromium's console lines for answers the test provoked on purpose."""
    codes = "|".join(str(status) for status in statuses)
    pattern = re.compile(rf"status of ({codes}) ")
    web.console_errors[:] = [e for e in web.console_errors if not pattern.search(e)]


@pytest.fixture(scope="module")
def web_server(service_module, tmp_path_factory):
    """The service without authentication on a loopback port, shared by this module."""
    with served(service_module, tmp_path_factory.mktemp("web-audit")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def open_page(browser):
    with page_opener(browser) as open_:
        yield open_


def test_every_patient_field_has_a_labelled_control_with_the_schemas_range_and_choices(client):
    response = client.get("/")
    controls = FormControls()
    controls.feed(response.text)
    schema = Patient.model_json_schema()["properties"]

    assert response.status_code == 200
    assert set(Patient.model_fields) | {"months_since_treatment"} == set(controls.controls)
    for name in Patient.model_fields:
        control = controls.controls[name]
        assert control["id"] in controls.labelled, name
        spec = schema[name]
        variants = spec.get("anyOf", [spec])
        value = next(v for v in variants if v.get("type") != "null")
        if "enum" in value:
            assert control["tag"] == "select"
            assert controls.options[name] == ["", *value["enum"]]
        elif value["type"] == "boolean":
            nullable = len(variants) > 1
            assert control.get("type") == ("checkbox" if not nullable else None), name
            if nullable:
                assert controls.options[name] == ["", "true", "false"]
        else:
            assert control["type"] == "number"
            assert float(control["min"]) == value["minimum"]
            assert float(control["max"]) == value["maximum"]
        required = name in Patient.model_json_schema()["required"]
        assert ("required" in control) == (required and control.get("type") != "checkbox")
    assert controls.controls["age_years"]["step"] == "1"
    assert float(controls.controls["months_since_treatment"]["max"]) == 120


def test_the_form_at_the_root_leaves_the_api_and_bentoml_routes_where_they_were(client):
    page = client.get("/")
    script = client.get("/web/vendor/plotly.min.js")

    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.text[:200].count("plotly.js v") == 1
    assert client.get("/web/app.js").status_code == 200
    assert client.get("/web/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/web/no-such-file.js").status_code == 404
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    prognosis = client.post("/v1/prognosis", json=example("g2_pancreas_sirt.json"))
    assert prognosis.json()["model"]["trained_on"] == "synthetic"
    assert "/v1/prognosis" in client.get("/docs.json").json()["paths"]
    assert client.post("/", json={}).status_code == 405


def test_a_g2_pancreatic_patient_gets_both_curves_the_modality_tables_and_the_reasons(
    web_server, open_page, caplog
):
    caplog.set_level(logging.INFO)
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page, age="63", burden="37.25")

    submit_with_enter(page)
    wait_for_results(page)

    for kind in CHARTS:
        for endpoint in ("hpfs", "os"):
            lengths = trace_lengths(page, f"chart-{kind}-{endpoint}")
            assert lengths, (kind, endpoint)
            assert min(lengths) > 0, (kind, endpoint, lengths)
            assert page.locator(f"#chart-{kind}-{endpoint} .main-svg").count() > 0
    assert trace_lengths(page, "chart-survival-hpfs")[:3] == [121, 121, 121]
    assert trace_lengths(page, "chart-modalities-os") == [121, 121, 121]
    for endpoint in ("hpfs", "os"):
        rows = page.locator(f"#modality-table-{endpoint} tbody tr")
        assert rows.count() == 3
        for index, modality in enumerate(("TACE", "TAE", "SIRT")):
            cells = rows.nth(index).locator("th, td").all_inner_texts()
            assert re.search(rf"\b{modality}\b", cells[0]), cells
            assert all(re.search(r"\d", cell) for cell in cells[2:6]), cells
        labels = page.evaluate(
            "id => document.getElementById(id).data[0].y", f"chart-explain-{endpoint}"
        )
        assert any("tumour burden" in label.lower() for label in labels), labels
        assert (
            page.evaluate(
                "id => document.getElementById(id).layout.xaxis.type", f"chart-explain-{endpoint}"
            )
            == "log"
        )
    assert "TACE (planned)" in page.inner_text("#key-title")
    assert "synthetic" in page.inner_text("#result-disclaimer").lower()
    assert page.is_visible("#caveat")
    assert "not a randomised comparison" in page.inner_text("#caveat")
    assert "netprog-bundle:" in page.inner_text("#provenance")
    assert "log relative hazard" in page.inner_text("#why-title + .chart-note")
    assert not any(element.is_visible() for element in page.locator(".print-only").all())
    [request] = web.api_requests("/v1/prognosis")
    assert json.loads(request.post_data)["patient"]["tumor_burden_percent"] == 37.25
    web.assert_clean()
    assert "37.25" not in caplog.text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "result-page.png", full_page=True)


def test_the_numbers_at_risk_and_the_incidence_of_progression_are_the_apis(web_server, open_page):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)

    with page.expect_response("**/v1/prognosis") as answer:
        submit_with_enter(page)
    wait_for_results(page)
    prognosis = answer.value.json()

    for endpoint in ("hpfs", "os"):
        row = page.locator(f"#at-risk-{endpoint} tr")
        assert row.locator("th").inner_text() == "Number at risk"
        cells = row.locator("td")
        months = [int(m) for m in cells.evaluate_all("tds => tds.map(td => td.dataset.month)")]
        expected = {n["month"]: n["at_risk"] for n in prognosis[endpoint]["numbers_at_risk"]}
        assert months[:3] == [0, 12, 24]
        assert months == sorted(months)
        assert [int(c) for c in cells.all_inner_texts()] == [expected[m] for m in months]
        lefts = cells.evaluate_all("tds => tds.map(td => td.getBoundingClientRect().left)")
        assert lefts == sorted(lefts)
    assert "progression or death" in page.inner_text("#curves-title + .pair")
    incidence = prognosis["hepatic_progression"]
    measure = "cumulative incidence of hepatic progression (death as a competing event)"
    assert measure in page.inner_text("#incidence-title").lower()
    rows = page.locator("#incidence-table tbody tr")
    assert rows.count() == 3
    planned = rows.filter(has_text="planned").locator("td").all_inner_texts()
    for cell, horizon in zip(planned, ("12", "24", "36", "60"), strict=True):
        at = incidence["cumulative_incidence_at"][horizon]
        assert cell.split()[0] == js_fixed(at["value"] * 100)
        assert re.search(r"\d+(\.\d)?–\d+(\.\d)?", cell), cell
    assert trace_lengths(page, "chart-incidence") == [len(incidence["curve"])] * 3
    web.assert_clean()


def test_the_page_loads_and_answers_with_every_non_loopback_request_blocked(web_server, open_page):
    web = open_page(web_server, viewport={"width": 1024, "height": 1366})
    page = web.page
    fill_g2_pancreas(page)
    page.fill("#field-months_since_treatment", "6")

    page.click("#submit-button")
    wait_for_results(page)

    assert page.evaluate("typeof Plotly") == "object"
    assert min(trace_lengths(page, "chart-survival-os")) > 0
    names = page.evaluate("document.getElementById('chart-survival-os').data.map(t => t.name)")
    assert "if still alive at 6 mo" in names
    assert web.api_requests("/web/vendor/plotly.min.js")
    web.assert_clean()


def test_the_form_is_reached_in_reading_order_by_tab_with_a_visible_focus(web_server, open_page):
    web = open_page(web_server)
    page = web.page
    controls = [f"field-{name}" for name in (*Patient.model_fields, "months_since_treatment")]
    # "About this model" (the intervals' uncertainty, the evidence base) sits between the
    # skip link and the form.
    expected = ["skip-link", "about-model-summary", *controls, "submit-button", "reset-button"]

    visited, outlines = [], []
    for _ in expected:
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.id"))
        outlines.append(page.evaluate("getComputedStyle(document.activeElement).outlineStyle"))

    assert visited == expected
    assert "none" not in outlines
    web.assert_clean()


def test_an_out_of_range_age_is_flagged_next_to_the_age_field_and_nothing_is_sent(
    web_server, open_page
):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page, age="130")

    submit_with_enter(page)

    message = page.locator("[data-field='age_years'] .error")
    message.wait_for(state="visible")
    assert "between 18 and 100 years" in message.inner_text()
    assert page.get_attribute("#field-age_years", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "field-age_years"
    assert page.is_visible("#form-errors")
    assert page.locator("#results-body").is_hidden()
    assert web.api_requests("/v1/prognosis") == []
    web.assert_clean()


def test_every_imputable_field_offers_not_recorded_and_the_answer_names_what_was_imputed(
    web_server, open_page
):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)
    for name in IMPUTED_QUANTITIES:
        control = page.locator(f"#field-{name}")
        if control.evaluate("e => e.tagName") == "SELECT":
            texts = control.locator("option").all_inner_texts()
            assert any(t.startswith("Not recorded") for t in texts), (name, texts)
        else:
            assert control.get_attribute("placeholder") == "Not recorded", name
    assert page.get_attribute("#field-ki67_percent", "placeholder") == "Not recorded"
    page.select_option("#field-who_grade", "")
    page.fill("#field-ki67_percent", "")
    page.fill("#field-tumor_burden_percent", "")
    page.select_option("#field-extrahepatic_metastases", "")

    submit_with_enter(page)
    wait_for_results(page)

    [request] = web.api_requests("/v1/prognosis")
    sent = json.loads(request.post_data)["patient"]
    assert sent.get("tumor_burden_percent") is None
    assert sent.get("extrahepatic_metastases") is None
    warnings = page.inner_text("#warnings")
    for label in ("WHO grade", "Hepatic tumour burden", "Extrahepatic metastases"):
        assert label in warnings
    summary = page.inner_text("#patient-summary")
    assert "grade not recorded (imputed)" in summary
    assert "tumour burden not recorded (imputed)" in summary
    web.assert_clean()


def test_field_errors_from_the_service_are_shown_next_to_their_fields(web_server, open_page):
    web = open_page(web_server)
    page = web.page

    def out_of_range_burden(route) -> None:
        body = json.loads(route.request.post_data)
        body["patient"]["tumor_burden_percent"] = 101
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/prognosis", out_of_range_burden)
    fill_g2_pancreas(page)

    submit_with_enter(page)

    message = page.locator("[data-field='tumor_burden_percent'] .error")
    message.wait_for(state="visible")
    assert "less than or equal to 100" in message.inner_text()
    assert page.get_attribute("#field-tumor_burden_percent", "aria-invalid") == "true"
    assert len(web.api_requests("/v1/prognosis")) == 1
    expected_http_errors(web, 400)
    web.assert_clean()


def test_the_printed_report_is_one_page_with_charts_tables_and_caveats_but_no_form(
    web_server, open_page
):
    web = open_page(web_server, viewport=A4_CONTENT)
    page = web.page
    fill_g2_pancreas(page)
    submit_with_enter(page)
    wait_for_results(page)

    page.emulate_media(media="print")
    page.evaluate("window.netprog.beforePrint()")
    shown = {selector: page.is_visible(selector) for selector in PRINTED}
    form_hidden = page.locator("#patient-form").is_hidden()
    screen_only = [element.is_visible() for element in page.locator(".screen-only").all()]
    width, height = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)

    assert form_hidden
    assert not any(screen_only)
    assert shown == dict.fromkeys(PRINTED, True)
    assert width <= A4_CONTENT["width"]
    assert height <= A4_CONTENT["height"]
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.pdf").write_bytes(pdf)
    web.assert_clean()


def test_with_tokens_the_page_asks_for_one_reasks_when_refused_and_then_answers(
    service_module, open_page, tmp_path
):
    with served(service_module, tmp_path, api_token_hashes=hash_token(TOKEN)) as server:
        web = open_page(server)
        page = web.page
        dialog = page.locator("#token-dialog")
        dialog.wait_for(state="visible")
        assert page.get_attribute("#token-input", "type") == "password"

        page.fill("#token-input", "not-the-token")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.getElementById('token-reason').textContent.includes('did not accept')"
        )
        page.fill("#token-input", TOKEN)
        page.keyboard.press("Enter")
        dialog.wait_for(state="hidden")
        page.wait_for_function(
            "() => document.getElementById('model-line').textContent.includes('netprog-bundle')"
        )
        fill_g2_pancreas(page)
        submit_with_enter(page)
        wait_for_results(page)

        [request] = web.api_requests("/v1/prognosis")
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert page.evaluate("sessionStorage.getItem('netprog.apiToken')") == TOKEN
        assert page.locator("#modality-table-hpfs tbody tr").count() == 3
        expected_http_errors(web, 401, 403)
        web.assert_clean()
