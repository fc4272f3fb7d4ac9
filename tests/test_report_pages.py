"""What the report pages say about each estimate: design, clients, sign, unit, threshold,
power and heterogeneity; the legend and methods agree with the cells; the index is balanced.

Synthetic protected claims tables, no notebook run: fast.
"""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mfr_analysis.report import views as v
from mfr_analysis.report import wording as w
from mfr_analysis.report.labels import (
    design_label,
    design_rule,
    designs,
    legend_verdicts,
    verdict_label,
    verdict_rule,
)
from mfr_analysis.report.safe_text import markdown_text

ESTIMATE_VERDICTS = ("supported", "below_threshold", "no_meaningful_effect", "contradicted",
                     "inconclusive", "association_shown", "no_association_shown")


def claim_row(claim_id: str = "pain", group: str = "all", *, outcome: str = "", verdict: str,
              design: str = "controlled", estimate: float = -1.2, mcid: float = 2.0,
              unit: str = "points", n_clients: float = 120, n_control: float = 40,
              **extra: object) -> dict:
    """One row of a protected claims table, as the claims engine and privacy layer write it."""
    suppressed = verdict == "suppressed"
    no_fit = verdict in {"not_measured", "insufficient_data"} or suppressed
    number = math.nan if no_fit else estimate
    return {
        "claim_id": claim_id, "audience_group": group, "outcome": outcome or claim_id,
        "estimate": number, "ci_low": number - 0.3, "ci_high": number + 0.3,
        "p_value": 0.01, "p_adjusted": 0.02, "mcid": mcid,
        "n_clients": math.nan if suppressed else (0 if verdict == "not_measured" else n_clients),
        "n_sessions": math.nan if suppressed else 400, "method": "OLS", "verdict": verdict,
        "note": "", "unit": unit, "design": "" if no_fit else design,
        "n_control_clients": n_control if design == "controlled" else 0,
        "threshold_source": "Farrar et al. 2001" if math.isfinite(mcid) else "",
        "heterogeneity_p": math.nan, "mde": 0.4, "clients_needed": 300.0, **extra,
    }


class Cells(HTMLParser):
    """Every scorecard cell: its attributes and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict] = []
        self._open = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "td" and "mfr-cell" in (attributes.get("class") or ""):
            self.cells.append({**attributes, "text": ""})
            self._open = 1
        elif self._open and tag == "td":
            self._open = 0

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = 0

    def handle_data(self, data: str) -> None:
        if self._open:
            self.cells[-1]["text"] += data


def cells_of(html: str) -> list[dict]:
    parser = Cells()
    parser.feed(html)
    return parser.cells


def visible(html: str) -> str:
    """The text of an HTML fragment, tags dropped and entities read."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", " ", html))


def plain_markdown(source: str) -> str:
    """Markdown source with backslash escapes read (what the reader sees)."""
    return re.sub(r"\\(.)", r"\1", source)


def test_every_cell_states_design_clients_and_attributes() -> None:
    rows = [claim_row(verdict=verdict, design=design, group=group)
            for group, (verdict, design) in zip(
                ["all", "athlete", "senior", "desk_worker", "rehab", "chronic_pain"],
                [("below_threshold", "controlled"), ("supported", "uncontrolled"),
                 ("inconclusive", "controlled"), ("no_meaningful_effect", "uncontrolled"),
                 ("suppressed", "controlled"), ("insufficient_data", "")], strict=True)]
    rows.append(claim_row("breathing", verdict="association_shown", design="observational",
                          estimate=-0.84, mcid=math.nan, outcome="stress"))
    cells = cells_of(v.scorecard(pd.DataFrame(rows)).data)
    assert len(cells) == 7
    for cell in cells:
        assert {"data-claim", "data-group", "data-design", "data-verdict",
                "data-n-clients"} <= set(cell)
    by_group = {(c["data-claim"], c["data-group"]): c for c in cells}
    controlled = by_group[("pain", "all")]
    assert controlled["data-design"] == "controlled"
    assert controlled["data-n-clients"] == "120"
    assert design_label("controlled") in controlled["text"]
    assert "120 clients (40 control)" in controlled["text"]
    before_after = by_group[("pain", "athlete")]
    assert before_after["data-design"] == "uncontrolled"
    assert design_label("uncontrolled") in before_after["text"]
    assert "control)" not in before_after["text"]
    association = by_group[("breathing", "all")]
    assert association["data-design"] == "observational"
    assert design_label("observational") in association["text"]
    # a withheld cell: verdict suppressed, no design, no number at all
    hidden = by_group[("pain", "rehab")]
    assert hidden["data-verdict"] == "suppressed"
    assert hidden["data-n-clients"] == "" and hidden["data-design"] == ""
    assert not re.search(r"\d", hidden["text"])


def test_inconclusive_cell_and_findings_give_power_in_words() -> None:
    row = claim_row(verdict="inconclusive", mde=0.57, clients_needed=412.0, n_clients=55,
                    n_control=20)
    cell = cells_of(v.scorecard(pd.DataFrame([row])).data)[0]
    assert "detectable: ≥ 0.57" in cell["text"] and "about 412 clients needed" in cell["text"]
    words = plain_markdown(v.findings(pd.DataFrame([row])).data)
    assert "only an effect of 0.57 points or more could reliably be detected" in words
    assert "about 412 clients would be needed to detect the threshold of 2 points" in words


def test_signs_say_what_rose_or_fell_against_what() -> None:
    tightness = claim_row("tightness", verdict="no_meaningful_effect", estimate=0.31)
    assert w.effect_words(pd.Series(tightness)) == (
        "tightness rose 0.31 points more than in control clients")
    pain = claim_row(verdict="below_threshold", design="uncontrolled", estimate=-0.99)
    assert w.effect_words(pd.Series(pain)) == (
        "pain fell 0.99 points from before to after a session")
    delivery = claim_row("delivery", outcome="pain", verdict="association_shown",
                         design="observational", estimate=-0.51, mcid=math.nan)
    assert w.effect_words(pd.Series(delivery)) == (
        "pain fell 0.51 points more after practitioner sessions than after self-treatment")
    # every row says which sign is better, with its unit
    html = v.scorecard(pd.DataFrame([tightness, pain])).data
    assert "in points; below 0: tightness fell (better)" in visible(html)
    assert "+0.31 [+0.01, +0.61]" in visible(html)  # signed, real minus signs elsewhere
    assert "−0.99 [−1.29, −0.69]" in visible(html)


def test_odds_ratios_are_shown_as_ratios() -> None:
    row = claim_row("pressure_safety", outcome="adverse_event", verdict="association_shown",
                    design="observational", estimate=1.65, mcid=math.nan,
                    unit="odds ratio per pressure point", ci_low=1.22, ci_high=2.24)
    row.update(ci_low=1.22, ci_high=2.24)
    html = visible(v.scorecard(pd.DataFrame([row])).data)
    assert "×1.65 [×1.22, ×2.24]" in html
    assert "+1.65" not in html
    assert "above ×1" in html


def test_lasting_relief_rows_are_named_apart_and_thresholds_rounded() -> None:
    rows = pd.DataFrame([
        claim_row("lasting_relief", outcome="pain_pre", verdict="no_meaningful_effect",
                  estimate=-0.12, mcid=0.636, unit="points per week"),
        claim_row("lasting_relief", outcome="pain_followup", verdict="below_threshold",
                  estimate=-0.45),
    ])
    text = visible(v.scorecard(rows).data)
    assert "weekly trend" in text and "at follow-up" in text
    assert "threshold 0.64 points per week" in text
    assert "0.636" not in text
    words = plain_markdown(v.findings(rows).data)
    assert "Weekly trend of pain before sessions:" in words
    assert "Pain at follow-up vs before the session:" in words


@pytest.mark.parametrize(("value", "shown"), [(0.636, "0.64"), (2.0, "2"), (5, "5"),
                                              (12.5, "12"), (0.0563, "0.056"), (150, "150")])
def test_thresholds_are_rounded_sensibly(value: float, shown: str) -> None:
    assert w.rounded(value) == shown


def test_mixed_designs_are_said_next_to_the_claim() -> None:
    rows = pd.DataFrame([
        claim_row(verdict="no_meaningful_effect", estimate=0.31),
        claim_row(group="athlete", verdict="below_threshold", design="uncontrolled",
                  estimate=-0.6),
        claim_row(group="senior", verdict="below_threshold", design="uncontrolled",
                  estimate=-0.7),
    ])
    html = v.scorecard(rows).data
    header = re.search(r'<th scope="row".*?</th>', html, re.S)[0]
    assert "Designs differ between groups" in visible(header)
    assert "overstates the benefit" in visible(header)
    words = plain_markdown(v.findings(rows).data)
    assert "Compared with control clients" in words
    assert "From before to after a session" in words
    assert "overstates the benefit" in words
    same = v.scorecard(rows.assign(design="controlled")).data
    assert "Designs differ" not in same


def test_heterogeneity_is_answered_in_words() -> None:
    rows = pd.DataFrame([
        claim_row(verdict="below_threshold", heterogeneity_p=0.0004),
        claim_row(group="athlete", verdict="below_threshold"),
        claim_row(group="senior", verdict="supported", estimate=-2.5),
    ])
    assert "Do groups differ? yes (p < 0.001)" in visible(v.scorecard(rows).data)
    assert "the groups' estimates differ more than chance would explain (p < 0.001)" in \
        plain_markdown(v.findings(rows).data)
    alike = rows.assign(heterogeneity_p=[0.68, math.nan, math.nan])
    assert "Do groups differ? no clear difference (p = 0.68)" in visible(
        v.scorecard(alike).data)


def test_findings_say_what_each_design_compares() -> None:
    rows = pd.DataFrame([
        claim_row(verdict="below_threshold"),
        claim_row("tightness", verdict="below_threshold", design="uncontrolled", estimate=-0.6),
        claim_row("breathing", outcome="stress", verdict="association_shown",
                  design="observational", estimate=-0.84, mcid=math.nan),
    ])
    words = plain_markdown(v.findings(rows).data)
    assert "compared with control clients" in words.lower()
    assert "pain fell 1.20 points more than in control clients" in words
    assert "from before to after a session" in words.lower()
    assert ("sessions with deep breathing were followed by larger stress drops than sessions "
            "without") in words
    assert "This does not show that breathing caused it." in words


@pytest.mark.parametrize("design", ["controlled", "uncontrolled", "observational"])
@pytest.mark.parametrize("verdict", ESTIMATE_VERDICTS + ("insufficient_data", "not_measured",
                                                         "suppressed"))
def test_legend_methods_and_cells_agree(verdict: str, design: str) -> None:
    row = claim_row(verdict=verdict, design=design,
                    mcid=math.nan if design == "observational" else 2.0)
    table = pd.DataFrame([row])
    html = v.scorecard(table).data
    legend = visible(re.search(r'<div class="mfr-legend">.*</div>', html, re.S)[0])
    methods = plain_markdown(v.verdict_methods(table, {"alpha": 0.05, "correction": "holm"}))
    cell = cells_of(html)[0]
    # the cell's verdict words are the legend's and the methods' label, with the same rule
    assert cell["text"].startswith(verdict_label(verdict))
    assert f"{verdict_label(verdict)} {verdict_rule(verdict)}" in " ".join(legend.split())
    assert f"*{verdict_label(verdict)}*: {verdict_rule(verdict)}" in methods
    if cell["data-design"]:
        assert design_label(design) in cell["text"]
        assert f"{design_label(design)} {design_rule(design)}" in " ".join(legend.split())
        assert f"*{design_label(design)}*: {design_rule(design)}" in methods


def test_every_verdict_and_design_has_its_words() -> None:
    from mfr_analysis.claims import VERDICTS

    for verdict in (*VERDICTS, "suppressed"):
        assert verdict in legend_verdicts(), verdict
        assert verdict_rule(verdict) != verdict.replace("_", " "), verdict
    assert designs() == ["controlled", "uncontrolled", "observational"]
    # no "Supported" without a stated threshold, in the words too
    assert "threshold" in verdict_rule("supported")
    assert "no threshold" in verdict_rule("association_shown")


def test_a_small_control_arm_is_never_printed() -> None:
    row = claim_row(verdict="below_threshold", n_clients=56, n_control=10)
    assert "arm sizes withheld" in w.clients_text(pd.Series(row), 11)
    row = claim_row(verdict="below_threshold", n_clients=56, n_control=50)  # 6 MFR clients
    assert "arm sizes withheld" in w.clients_text(pd.Series(row), 11)
    row = claim_row(verdict="below_threshold", n_clients=56, n_control=math.nan)
    assert "arm sizes withheld" in w.clients_text(pd.Series(row), 11)


def test_attribute_values_are_escaped() -> None:
    hostile = '"><img src=x onerror=alert(1)>'
    row = claim_row(group=hostile, verdict="below_threshold")
    html = v.scorecard(pd.DataFrame([row])).data
    assert hostile not in html
    assert cells_of(html)[0]["data-group"] == hostile  # read back intact, never as markup


def test_settings_in_words() -> None:
    assert v.settings_words(0.05, "holm", 11) == (
        "5 % significance, Holm correction across all claims, groups under 11 clients hidden")


def test_index_lists_every_claim_verdict_with_its_design(tmp_path: Path) -> None:
    from mfr_analysis.report.index import write_index
    from mfr_analysis.report.run import ReportOptions, SliceResult

    rows = [claim_row("tightness", verdict="no_meaningful_effect"),
            claim_row("circulation", verdict="not_measured", mcid=math.nan),
            claim_row("pain", verdict="inconclusive"),
            claim_row("stress", verdict="insufficient_data"),
            claim_row("rom", outcome="rom:knee_flexion_deg", verdict="suppressed"),
            claim_row("breathing", outcome="stress", verdict="association_shown",
                      design="observational", mcid=math.nan),
            claim_row("slow_pace", outcome="pain", verdict="no_association_shown",
                      design="observational", mcid=math.nan),
            claim_row("pain", group="athlete", verdict="supported", estimate=-2.5)]
    claims_path = tmp_path / "claims-all.json"
    claims_path.write_text(pd.DataFrame(rows).to_json(orient="records"), encoding="utf-8")
    result = SliceResult("claims-all", "All clients", "claims_report.ipynb",
                         "claims-all.html", str(claims_path))
    options = vars(ReportOptions())
    page = write_index(tmp_path, [result], [], "Myofascial release claims", options)
    text = page.read_text(encoding="utf-8")
    report_row = re.search(r'<ul class="verdicts">.*?</ul>', text, re.S)[0]
    for verdict in ("no_meaningful_effect", "not_measured", "inconclusive",
                    "insufficient_data", "suppressed", "association_shown",
                    "no_association_shown"):
        assert verdict_label(verdict) in report_row, verdict
    assert verdict_label("supported") not in report_row  # the athletes' row is not "all"
    assert report_row.count("<li") == 7
    assert design_label("controlled") in report_row
    assert design_label("observational") in report_row
    footer = visible(text)
    assert "5 % significance, Holm correction across all claims, groups under 11 clients " \
           "hidden" in footer
    assert "To share" in footer and "keep them within the clinic" in footer
    assert "<title>Myofascial release claims: index of reports</title>" in text


def test_methods_state_each_threshold_with_its_source() -> None:
    rows = pd.DataFrame([claim_row(verdict="below_threshold"),
                         claim_row("delivery", outcome="pain", verdict="association_shown",
                                   design="observational", mcid=math.nan)])
    methods = plain_markdown(v.verdict_methods(rows, {"alpha": 0.05, "correction": "holm"}))
    assert "threshold 2 points (Farrar et al. 2001)" in methods
    assert "no threshold" in methods.split("*Practitioner vs self-treatment*")[1]


def test_findings_source_is_escaped_markdown() -> None:
    rows = pd.DataFrame([claim_row(verdict="below_threshold")])
    source = v.findings(rows).data
    assert markdown_text("pain fell 1.20 points more than in control clients", None) in source


def test_a_report_notebook_passes_the_scorecard_its_settings() -> None:
    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / "reports" /
                           "claims_report.ipynb").read_text(encoding="utf-8"))
    code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "v.scorecard(shown, settings.alpha, minimum)" in code
    assert "minimum = settings.min_reported_clients" in code
    assert "v.findings(shown, settings.alpha)" in code


def test_no_association_cells_say_what_was_detectable_and_no_small_study_size() -> None:
    row = claim_row("slow_pace", outcome="pain", verdict="no_association_shown",
                    design="observational", mcid=math.nan, mde=0.28, clients_needed=math.nan)
    cell = cells_of(v.scorecard(pd.DataFrame([row])).data)[0]
    assert "detectable: ≥ 0.28" in cell["text"]
    small = claim_row(verdict="inconclusive", n_clients=math.nan, clients_needed=9.0)
    assert "clients would be needed" not in w.power_text(pd.Series(small))
