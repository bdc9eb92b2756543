"""The VCF story as a Plotly figure (JSON for plotly.js, which the page loads from this origin).

Top: pain readings against the NRS thresholds of the decision. Below, one lane each: fracture onsets
and levels, exam and imaging findings, labs (INR, platelets), bone health (DXA, osteoporosis therapy)
and the decision. Shaded bands mark 3, 6 and 52 weeks after the newest onset. Every point carries a
text label and each kind its own marker shape, and thresholds and band edges are labelled and dashed
differently, so that the chart reads without colour.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..decide import Assessment
from ..decide import thresholds as T
from ..decide.facts import VERTEBRAE, Facts, Span
from . import words
from .evidence import when as resource_date

LANES = ("Fracture", "Exam & imaging", "Labs", "Bone health", "Decision")
FINDING_NAMES = {
    "point-tenderness": "Point tenderness",
    "marrow-edema": "Marrow edema",
    "height-loss": "Height loss",
    "kyphotic-deformity": "Kyphosis",
    "neurologic-deficit": "Neuro deficit",
    "sins": "SINS",
    "rdq": "RDQ",
}
BANDS = (  # (days after onset, label, line dash)
    (T.CONSERVATIVE_TRIAL.value, "3 weeks", "dot"),
    (T.SUBACUTE.value, "6 weeks", "dash"),
    (T.CHRONIC.value, "52 weeks", "longdash"),
)
PAIN_LINES = (  # (threshold, label, dash)
    (T.PAIN_MIN.value, f"NRS {T.PAIN_MIN.value:g}: minimum for augmentation", "dot"),
    (T.PAIN_SEVERE.value, f"NRS {T.PAIN_SEVERE.value:g}: severe (VAPOUR)", "dash"),
    (T.PAIN_HOSPITALISED.value, f"NRS {T.PAIN_HOSPITALISED.value:g}: hospitalised", "longdash"),
)
INK = "#1f2937"
BAND_LABEL_STEP = 18  # px between the rows of band labels above the chart
FONT = {"family": "system-ui, sans-serif", "size": 13, "color": INK}


def _levels(spans: tuple[Span, ...]) -> str:
    if not spans:
        return "level not coded"
    return ", ".join(VERTEBRAE[a] if a == b else f"{VERTEBRAE[a]}–{VERTEBRAE[b]}" for a, b in spans)


TEXT_POSITIONS = ("top center", "bottom center", "top right", "bottom right")


def _lane(
    fig: go.Figure,
    lane: str,
    points: list[tuple[Any, str]],
    symbol: str,
    name: str,
    placed: dict[str, int] | None = None,
    position: str | None = None,
) -> None:
    """``placed`` counts the labels already in each lane: positions cycle across the lane's traces,
    so two kinds of mark on one day (a DXA and a therapy start) do not print over each other."""
    if not points:
        return
    first = 0 if placed is None else placed.get(lane, 0)
    if placed is not None:
        placed[lane] = first + len(points)
    positions = [position or TEXT_POSITIONS[(first + n) % len(TEXT_POSITIONS)] for n in range(len(points))]
    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[lane] * len(points),
            text=[p[1] for p in points],
            mode="markers+text",
            textposition=positions,
            marker={"symbol": symbol, "size": 12, "color": INK, "line": {"width": 1.5, "color": INK}},
            name=name,
            hovertemplate="%{x|%Y-%m-%d}: %{text}<extra></extra>",
            cliponaxis=False,
        ),
        row=2,
        col=1,
    )


def figure(facts: Facts, assessment: Assessment, resources: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.45, 0.55], vertical_spacing=0.06)
    now = facts.now
    dates: list[date] = [now.date()]
    placed: dict[str, int] = {}

    pain = facts.readings.get("pain", ())
    if pain:
        fig.add_trace(
            go.Scatter(
                x=[r.when for r in pain],
                y=[r.value for r in pain],
                text=[f"{r.value:g}" for r in pain],
                mode="lines+markers+text",
                textposition="top center",
                marker={"symbol": "circle", "size": 10, "color": INK},
                line={"color": INK, "width": 2},
                name="Pain (NRS 0-10)",
                hovertemplate="%{x|%Y-%m-%d}: pain %{y}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        dates += [r.when.date() for r in pain]
    for value, label, dash in PAIN_LINES:
        fig.add_hline(
            y=value,
            line={"dash": dash, "width": 1.5, "color": "#6b7280"},
            annotation_text=label,
            annotation_position="top left",
            annotation_font=FONT,
            row=1,
            col=1,
        )

    onsets = [(f.onset, f"Onset, {_levels(f.levels)} ({f.kind})") for f in facts.fractures if f.onset]
    _lane(fig, "Fracture", onsets, "x-thin-open", "Fracture onset", placed)
    dates += [d.date() for d, _ in onsets]

    present: list[tuple[Any, str]] = []
    absent: list[tuple[Any, str]] = []
    measured: list[tuple[Any, str]] = []
    for kind, findings in facts.findings.items():
        name = FINDING_NAMES.get(kind)
        if not name:
            continue
        for f in findings:
            if f.when is None:
                continue
            dates.append(f.when.date())
            if f.value is not None:
                unit = " %" if kind == "height-loss" else ""
                measured.append((f.when, f"{name} {f.value:g}{unit}"))
            elif f.present is not None:
                (present if f.present else absent).append((f.when, f"{name}: {'present' if f.present else 'absent'}"))
    _lane(fig, "Exam & imaging", present, "circle", "Finding present", placed)
    _lane(fig, "Exam & imaging", absent, "circle-open", "Finding absent", placed)
    _lane(fig, "Exam & imaging", measured, "square-open", "Finding measured", placed)

    labs = [(r.when, f"INR {r.value:g}") for r in facts.readings.get("inr", ())]
    labs += [(r.when, f"Platelets {r.value:g}") for r in facts.readings.get("platelets", ())]
    _lane(fig, "Labs", labs, "triangle-up-open", "Lab", placed)
    dates += [w.date() for w, _ in labs]

    dxa = [(r.when, f"DXA T-score {r.value:g}") for r in facts.readings.get("dxa-tscore", ())]
    _lane(fig, "Bone health", dxa, "star-open", "DXA", placed)
    dates += [w.date() for w, _ in dxa]
    therapy = []
    for ref in facts.refs("osteoporosis-therapy"):
        resource = resources.get(ref, {})
        day = resource_date(resource)
        therapy.append((day or now.date().isoformat(), "Osteoporosis therapy" + ("" if day else " (undated)")))
    _lane(fig, "Bone health", therapy, "hexagon-open", "Osteoporosis therapy", placed)

    # at today, the right edge: its label reads leftwards, inside the chart
    _lane(fig, "Decision", [(now, words.decision(assessment))], "diamond", "Decision", position="top left")

    start = min(dates) - timedelta(days=14)
    end = now.date() + timedelta(days=21)
    newest = max((f.onset.date() for f in facts.fractures if f.onset), default=None)
    if newest is not None:
        # one row of labels above the chart per band: 3 and 6 weeks are days apart on a year's axis
        for row, (days, label, dash) in enumerate(BANDS):
            edge = newest + timedelta(days=days)
            fig.add_vrect(
                x0=newest, x1=edge, fillcolor="#9ca3af", opacity=0.08, line_width=0, layer="below", row="all", col=1
            )
            if edge > end:  # off the chart to the right: say where it ends
                fig.add_annotation(
                    x=end,
                    y=1.0,
                    yref="paper",
                    text=f"{label} end {edge.isoformat()} →",
                    showarrow=False,
                    xanchor="right",
                    yanchor="bottom",
                    yshift=BAND_LABEL_STEP * row,
                    font=FONT,
                )
                continue
            fig.add_vline(x=edge, row="all", col=1, line_dash=dash, line_width=1, line_color="#6b7280")
            fig.add_annotation(
                x=edge,
                y=1.0,
                yref="paper",
                text=label,
                showarrow=False,
                # near the right edge a centred label would be cut: it ends at its line instead
                xanchor="right" if edge > now.date() - timedelta(days=60) else "center",
                yanchor="bottom",
                yshift=BAND_LABEL_STEP * row,
                font=FONT,
            )

    fig.update_layout(
        height=620,
        margin={"l": 120, "r": 40, "t": 30 + BAND_LABEL_STEP * len(BANDS), "b": 40},
        font=FONT,
        showlegend=True,
        legend={"orientation": "h", "y": -0.08},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_xaxes(range=[start, end], type="date", showgrid=True, gridcolor="#e5e7eb")
    fig.update_yaxes(title_text="Pain (NRS)", range=[0, 10.5], dtick=1, row=1, col=1, gridcolor="#f3f4f6")
    fig.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=list(LANES),
        range=[-0.5, len(LANES) - 0.5],
        row=2,
        col=1,
    )
    return fig


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON safe inside a ``<script type="application/json">`` element."""
    return str(fig.to_json()).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
