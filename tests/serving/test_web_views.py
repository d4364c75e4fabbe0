"""The clinician's and patient's views of the form in Chromium: icon arrays that are the API's
probabilities in whole people, the harms table with its source, the clinician/patient switch,
and the patient view and the handout on one A4 page each."""

from __future__ import annotations

import math
import re

from tests.serving import test_web
from tests.serving.test_web import (
    A4_CONTENT,
    fill_g2_pancreas,
    submit_with_enter,
    wait_for_results,
)
from tests.serving.web_conftest import ARTIFACTS

# The form's fixtures, shared with test_web.py: the service on a loopback port and Chromium.
web_server = test_web.web_server
browser = test_web.browser
open_page = test_web.open_page

MODALITIES = ("TACE", "TAE", "SIRT")
MONTHS = (12, 24, 36)
STATE_CLASSES = {
    "progression_free": "icon-free",
    "alive_after_progression": "icon-progressed",
    "died": "icon-died",
}


def _half_up(p: float) -> int:
    return math.floor(round(100 * p, 6) + 0.5)


def _answered(page):
    with page.expect_response("**/v1/prognosis") as answer:
        submit_with_enter(page)
    wait_for_results(page)
    return answer.value.json()


def _counts(page, selector: str) -> dict:
    return {key: page.locator(f"{selector} .{cls}").count() for key, cls in STATE_CLASSES.items()}


def test_each_icon_array_is_the_apis_probabilities_in_whole_people_with_a_text_alternative(
    web_server, open_page
):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)
    prognosis = _answered(page)

    for modality in MODALITIES:
        hpfs = next(m for m in prognosis["hpfs"]["modalities"] if m["modality"] == modality)
        os = next(m for m in prognosis["os"]["modalities"] if m["modality"] == modality)
        for month in MONTHS:
            alive = _half_up(os["survival_at"][str(month)]["value"])
            free = min(_half_up(hpfs["survival_at"][str(month)]["value"]), alive)
            selector = f"#icons-{modality}-{month}"
            assert _counts(page, selector) == {
                "progression_free": free,
                "alive_after_progression": alive - free,
                "died": 100 - alive,
            }, (modality, month)
            svg = page.locator(selector)
            assert svg.get_attribute("role") == "img"
            label = svg.get_attribute("aria-label")
            assert f"about {alive} of 100, between" in label
            assert f"died, about {100 - alive}" in label
    arrays = page.locator("#icon-arrays svg.icon-array")
    assert arrays.count() == len(MODALITIES) * len(MONTHS)
    for svg in arrays.all():
        assert svg.get_attribute("role") == "img"
        assert re.search(r"\d+ of 100", svg.get_attribute("aria-label"))
    assert page.locator("#icon-legend svg[aria-hidden='true']").count() == len(STATE_CLASSES)
    words = page.inner_text("#plain-clinician")
    assert words.startswith("Of 100 patients like this one treated with TACE (planned)")
    web.assert_clean()


def test_the_harms_table_shows_the_cited_figures_and_not_reported_for_sirt(web_server, open_page):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)
    _answered(page)

    def cell(modality: str, measure: str) -> str:
        return page.inner_text(
            f"#harms-table td[data-modality='{modality}'][data-measure='{measure}']"
        )

    assert cell("TACE", "toxicity_grade_3_or_worse") == "25 % of procedures"
    assert cell("TAE", "toxicity_grade_3_or_worse") == "22 % of procedures"
    assert cell("TACE", "mortality_30_day") == "1.4 % of procedures"
    assert cell("TAE", "hospital_stay_days") == "1.5 days"
    for measure in ("mortality_30_day", "toxicity_grade_3_or_worse", "hospital_stay_days"):
        assert cell("SIRT", measure) == "not reported"
    source = page.inner_text("#harms-source")
    assert "Ruutiainen" in source
    assert "J Vasc Interv Radiol 2007" in source
    assert "not predictions" in page.inner_text("#harms-title")
    web.assert_clean()


def test_the_switch_shows_the_patient_view_in_plain_words_and_back_by_keyboard(
    web_server, open_page
):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)
    _answered(page)

    page.focus("#view-patient")
    page.keyboard.press("Enter")

    assert page.get_attribute("#view-patient", "aria-pressed") == "true"
    assert page.is_hidden("#key-figures")
    assert page.is_hidden("#chart-survival-os")
    assert page.is_visible("#plain-patient")
    assert page.is_hidden("#plain-clinician")
    plain = page.inner_text("#plain-patient")
    assert plain.startswith("Out of 100 people like you who have chemoembolisation (TACE)")
    assert re.search(r"\b(HPFS|hazard|SHAP|interval)\b", plain) is None
    assert "made-up (simulated) patients" in plain
    label = page.get_attribute("#icons-TACE-12", "aria-label")
    assert label.startswith("chemoembolisation (TACE), after 1 year: out of 100 people")
    assert page.inner_text("#harms-table tbody th").startswith("Died within a month")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "view-clinician"
    page.keyboard.press("Enter")
    assert page.get_attribute("#view-clinician", "aria-pressed") == "true"
    assert page.is_visible("#key-figures")
    web.assert_clean()


def test_contributions_over_time_are_charted_per_horizon_and_listed_for_screen_readers(
    web_server, open_page
):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)
    prognosis = _answered(page)

    over_time = prognosis["contributions_over_time"]["os"]["at"]
    for at in over_time:
        chart = f"chart-time-{at['month']}"
        bars = page.evaluate("id => document.getElementById(id).data[0].x", chart)
        assert sorted(bars) == sorted(100 * i["contribution"] for i in at["items"])
        assert "reference patient" in page.get_attribute(f"#{chart}", "aria-label")
    tables = page.locator("#time-tables table")
    assert tables.count() == 3
    page.select_option("#time-curve", "hpfs")
    hpfs_12 = prognosis["contributions_over_time"]["hpfs"]["at"][0]
    bars = page.evaluate("() => document.getElementById('chart-time-12').data[0].x")
    assert sorted(bars) == sorted(100 * i["contribution"] for i in hpfs_12["items"])
    web.assert_clean()


def test_the_similar_patients_curve_is_the_apis_beside_the_models(web_server, open_page):
    web = open_page(web_server)
    page = web.page
    fill_g2_pancreas(page)
    prognosis = _answered(page)

    similar = prognosis["similar_patients"]
    assert f"k = {similar['k']}" in page.inner_text("#similar-rule")
    assert "synthetic" in page.inner_text("#similar-rule").lower()
    for endpoint in ("hpfs", "os"):
        entry = similar[endpoint]
        if not entry["shown"]:
            assert page.is_hidden(f"#chart-similar-{endpoint}")
            continue
        y = page.evaluate(
            "id => document.getElementById(id).data[1].y", f"chart-similar-{endpoint}"
        )
        assert y == [p["survival"] for p in entry["curve"]]
        model = page.evaluate(
            "id => document.getElementById(id).data[0].y", f"chart-similar-{endpoint}"
        )
        assert model == [p["survival"] for p in prognosis[endpoint]["curve"]]
    web.assert_clean()


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b", pdf))


def test_the_patient_view_prints_on_one_a4_page(web_server, open_page):
    web = open_page(web_server, viewport=A4_CONTENT)
    page = web.page
    fill_g2_pancreas(page)
    _answered(page)
    page.click("#view-patient")

    page.emulate_media(media="print")
    shown = {s: page.is_visible(s) for s in ("#plain-patient", "#icons-SIRT-36", "#harms-table")}
    hidden = [page.is_visible(s) for s in ("#key-figures", "#patient-form", "#chart-time-12")]
    pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)

    assert shown == dict.fromkeys(shown, True)
    assert not any(hidden)
    assert _pages(pdf) == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "patient-view.pdf").write_bytes(pdf)
    web.assert_clean()


def test_the_handout_prints_alone_on_one_a4_page_in_large_type_with_both_caveats(
    web_server, open_page
):
    web = open_page(web_server, viewport=A4_CONTENT)
    page = web.page
    fill_g2_pancreas(page)
    prognosis = _answered(page)

    page.emulate_media(media="print")
    page.evaluate("window.netprogViews.prepareHandout()")
    handout = page.inner_text("#handout")
    size = page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('#handout .handout-lead')).fontSize)"
    )
    results_hidden, handout_shown = page.is_hidden("#results"), page.is_visible("#handout")
    pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)

    assert results_hidden
    assert handout_shown
    assert _pages(pdf) == 1
    # Printing ends the handout: the page is the clinician's again.
    assert page.evaluate("document.body.classList.contains('print-handout')") is False
    assert size >= 18  # 14 pt
    assert "made-up (simulated) patients" in handout
    assert "not chosen by chance" in handout
    assert re.search(r"\b(HPFS|OS|hazard|SHAP|interval|modality)\b", handout) is None
    planned = next(m for m in prognosis["out_of_100"]["modalities"] if m["planned"])
    for at in planned["at"]:
        assert _counts(page, f"#handout-icons-{at['month']}") == {k: at[k] for k in STATE_CLASSES}
    assert "Had serious side effects: about 25 in 100 procedures" in handout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "handout.pdf").write_bytes(pdf)
    page.emulate_media(media="screen")
    assert page.is_visible("#results")
    web.assert_clean()
