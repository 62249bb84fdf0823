"""The static ``index.html`` of a teaching set: cases with thumbnails, de-identified study facts and notes.

Plain HTML with a few lines of inline script and style, no network resources, so it opens from a
CD, a USB stick or a zip on any computer. The unknown-case mode (on when the page opens; a
checkbox turns it off) keeps every case's diagnosis and discussion in a closed ``<details>``
element until its "Show diagnosis" line is clicked (which works without script). Every text is HTML-escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from lake.export.notes import CaseNote

#: Study facts shown per case, in this order: (label, key of the case's facts row).
FACT_FIELDS = (
    ("Modality", "modalities"),
    ("Description", "StudyDescription"),
    ("Body part", "BodyPartExamined"),
    ("Sex", "PatientSex"),
    ("Age", "PatientAge"),
    ("Study date (shifted)", "StudyDate"),
    ("Series", "series"),
    ("Images", "instances"),
)


@dataclass
class SeriesPreview:
    """One series of a case on the page: its thumbnail and preview (paths relative to the page)."""

    label: str
    images: int
    thumbnail: str
    preview: str


@dataclass
class Case:
    number: int
    facts: dict[str, Any]
    note: CaseNote
    series: list[SeriesPreview] = field(default_factory=list)


def study_facts(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) of the facts the lake keeps for a study (de-identified: no identifier, no UID)."""
    return [(label, str(row[key])) for label, key in FACT_FIELDS if row.get(key) not in (None, "")]


_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
.case{border-top:1px solid #ccc;padding:1em 0}
.series{display:inline-block;margin:0 1em 1em 0;text-align:center;font-size:90%}
.series img{display:block;background:#000;max-width:256px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:0 1em}
dl.facts dt{font-weight:bold}
details.answer summary{cursor:pointer;color:#06c}
"""

_SCRIPT = """
function lakeSetUnknown(on){
  document.querySelectorAll('details.answer').forEach(function(d){ d.open = !on; });
}
document.addEventListener('DOMContentLoaded', function(){
  var box = document.getElementById('unknown-mode');
  box.addEventListener('change', function(){ lakeSetUnknown(box.checked); });
  lakeSetUnknown(box.checked);
});
"""


def _paragraph(label: str, text: str, css: str) -> str:
    if not text:
        return ""
    return f'<p class="{css}"><strong>{escape(label)}:</strong> {escape(text)}</p>'


def _case_html(case: Case) -> str:
    note = case.note
    title = note.title or f"Case {case.number}"
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in study_facts(case.facts))
    series = "".join(
        f'<figure class="series"><a href="{escape(s.preview)}"><img src="{escape(s.thumbnail)}" '
        f'alt="{escape(s.label)}"></a><figcaption>{escape(s.label)} ({s.images} images)</figcaption></figure>'
        for s in case.series
    )
    answer = _paragraph("Diagnosis", note.diagnosis, "diagnosis") + _paragraph(
        "Discussion", note.discussion, "discussion"
    )
    if answer:  # a <details> element: it opens on a click without any script, also from a zip
        answer = f'<details class="answer"><summary>Show diagnosis</summary>{answer}</details>'
    return (
        f'<section class="case" id="case-{case.number}"><h2>{case.number}. {escape(title)}</h2>'
        f'<dl class="facts">{facts}</dl><div class="images">{series}</div>'
        f"{_paragraph('History', note.history, 'history')}{_paragraph('Findings', note.findings, 'findings')}"
        f"{answer}</section>"
    )


def index_html(title: str, cases: list[Case], summary: str) -> str:
    """The whole page (UTF-8 text)."""
    body = "\n".join(_case_html(c) for c in cases)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>\n"
        f'<body class="unknown-mode"><h1>{escape(title)}</h1><p class="summary">{escape(summary)}</p>'
        '<p><label><input type="checkbox" id="unknown-mode" checked> Unknown case mode '
        "(diagnoses hidden until clicked)</label></p>\n"
        f"{body}\n</body></html>\n"
    )
