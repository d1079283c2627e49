"""HTML teaching report of a session or of an operator's sessions (learning curve).

    assistant report SESSION|--operator NAME [--db PATH] [--out FILE] [--deidentify]
    assistant report SESSION --json [--deidentify] [--out FILE]   (data export)

One self-contained HTML file: inline CSS and inline SVG plots (quality over time,
needle depth over time, learning curve), no scripts, no external resources, so it
opens offline. ``--deidentify`` replaces operator names with stable pseudonyms and
drops free text (heard words, event texts, notes, source names); ``--json`` exports
the session's figures, samples and events as JSON (de-identified likewise).
"""
from __future__ import annotations

import argparse
import html
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from assistant.records import (SessionDbError, SessionStore, default_db_path, learning_curve,
                               operator_id, pseudonym, session_figures)

log = logging.getLogger(__name__)

NOT_FOR_CLINICAL_USE = "Decision support, not for clinical use."
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00")  # Okabe-Ito


# ----------------------------------------------------------------------------- SVG

def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks, v = [], start
    while v <= hi + 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def svg_line_plot(plot_id: str, title: str, series: Sequence[tuple[str, Sequence[float],
                                                                    Sequence[float | None]]],
                  x_label: str, y_label: str, y_range: tuple[float, float] | None = None,
                  hlines: Sequence[tuple[float, str]] = (),
                  spans: Sequence[tuple[float, float, str]] = (),
                  invert_y: bool = False, markers: bool = False, integer_x: bool = False,
                  width: int = 720, height: int = 260) -> str:
    """A simple line plot as inline SVG.

    ``series``: (label, xs, ys); a None y breaks the line (needle not seen).
    ``hlines``: (y, label) reference lines; ``spans``: (x0, x1, label) shaded ranges.
    ``invert_y``: larger values lower (depth). ``integer_x``: only whole-number x ticks.
    """
    ml, mr, mt, mb = 56, 16, 28, 40
    pw, ph = width - ml - mr, height - mt - mb
    xs_all = [x for _, xs, _ys in series for x in xs]
    ys_all = [y for _, xs, ys in series for y in ys if y is not None]
    x0, x1 = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1.0
    if y_range:
        y0, y1 = y_range
    else:
        ys_ref = ys_all + [h for h, _ in hlines]
        y0, y1 = (min(ys_ref), max(ys_ref)) if ys_ref else (0.0, 1.0)
        pad = (y1 - y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        f = (y - y0) / (y1 - y0)
        return mt + (f if invert_y else 1 - f) * ph

    e = html.escape
    out = [f'<svg id="{e(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{e(title)}">',
           f'<title>{e(title)}</title>',
           f'<text x="{ml}" y="18" class="ptitle">{e(title)}</text>',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>']
    for sx0, sx1, label in spans:
        a, b = px(max(sx0, x0)), px(min(sx1, x1))
        if b > a:
            out.append(f'<rect x="{a:.1f}" y="{mt}" width="{b - a:.1f}" height="{ph}" '
                       f'class="span"><title>{e(label)}</title></rect>')
    for t in _ticks(y0, y1):
        y = py(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{ml - 6}" y="{y + 4:.1f}" class="ytick">{t:g}</text>')
    for t in _ticks(x0, x1, min(8, int(x1 - x0)) if integer_x else 8):
        if integer_x and t != int(t):
            continue
        x = px(t)
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" class="xtick">{t:g}</text>')
    for yv, label in hlines:
        y = py(yv)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="ref"/>'
                   f'<text x="{ml + pw - 4}" y="{y - 4:.1f}" class="reflabel">{e(label)}</text>')
    for i, (label, xs, ys) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for x, y in zip(xs, ys):
            if y is None:
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(f"{px(x):.1f},{py(y):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif run:
                out.append(f'<polyline class="series" data-series="{e(label)}" '
                           f'points="{" ".join(run)}" stroke="{colour}" fill="none"/>')
            if markers:
                for p in run:
                    cx, cy = p.split(",")
                    out.append(f'<circle cx="{cx}" cy="{cy}" r="3.5" fill="{colour}"/>')
        out.append(f'<text x="{ml + 8 + 150 * i}" y="{mt + 14}" fill="{colour}" '
                   f'class="legend">{e(label)}</text>')
    out.append(f'<text x="{ml + pw / 2:.0f}" y="{height - 6}" class="xlabel">{e(x_label)}</text>')
    out.append(f'<text transform="translate(14 {mt + ph / 2:.0f}) rotate(-90)" '
               f'class="ylabel">{e(y_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
.banner{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;display:inline-block}
.caveat{background:#fff3cd;padding:0 4px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:.92em} th{background:#f3f3f3}
svg.plot{display:block;margin:8px 0;background:#fff}
svg .frame{fill:none;stroke:#888} svg .grid{stroke:#e4e4e4} svg .ref{stroke:#999;
stroke-dasharray:5 4} svg .span{fill:#E69F00;opacity:.18} svg .series{stroke-width:1.8}
svg text{font-size:11px;fill:#333} svg .ytick{text-anchor:end} svg .xtick{text-anchor:middle}
svg .xlabel{text-anchor:middle} svg .ylabel{text-anchor:middle} svg .reflabel{text-anchor:end;
fill:#666} svg .ptitle{font-size:13px;font-weight:600}
"""


def _fmt(v, unit: str = "", digits: int = 1) -> str:
    if v is None:
        return "&mdash;"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{html.escape(str(v))}{unit}"


def _figures_table(f: dict) -> str:
    rows = [
        ("operator", _fmt(f["operator"])), ("block", _fmt(f["block"])),
        ("duration", _fmt(f["duration_s"], " s")),
        (f"time to first adequate view (quality &ge; {f['adequate_threshold']:g})",
         _fmt(f["time_to_adequate_s"], " s")),
        ("share of time with an adequate view", _fmt(100 * f["adequate_share"], " %")),
        ("mean quality", _fmt(f["mean_quality"])),
        ("needle visible", _fmt(f["needle_visible_s"], " s")),
        ("deepest needle tip", _fmt(f["max_depth_mm"], " mm")),
        ("injection time", _fmt(f["injection_s"], " s")),
        ("alerts", _fmt(f["alerts"]) + (" (" + ", ".join(
            f"{html.escape(k)}: {v}" for k, v in sorted(f["alerts_by_key"].items())) + ")"
            if f["alerts_by_key"] else "")),
        ("commands (of which supervisor)",
         f"{f['commands']} ({f['supervisor_commands']})"),
        ("commands asked for but not understood (\"say again\")",
         _fmt(f.get("commands_unclear", 0))),
        ("commands acted on through the second opinion (an unsure classifier, PocketSphinx agreeing)",
         _fmt(f.get("commands_second_opinion", 0))),
        ("commands acted on through Whisper's check (the classifier had none, or another)",
         _fmt(f.get("commands_whisper", 0))),
    ]
    if f.get("unverified"):
        from assistant.guidance import unverified_words
        rows.append(("rests on outlines never checked on real scans",
                     f"<span class=\"caveat\">{html.escape(unverified_words(f['unverified']))}</span>"
                     " (quality, needle and alert figures use them)"))
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _curve_html(curve: list[dict], who: str) -> str:
    if not curve:
        return "<p>No sessions.</p>"
    ns = [f["n"] for f in curve]
    plot = svg_line_plot(
        "learning-curve", f"Learning curve: {who}: share of time with an adequate view",
        [("adequate view, % of time", ns, [100 * f["adequate_share"] for f in curve])],
        "session number", "% of time", y_range=(0, 100), markers=True, integer_x=True)
    plot += svg_line_plot(
        "learning-curve-time", f"Learning curve: {who}: time to first adequate view",
        [("time to adequate view, s", ns, [f["time_to_adequate_s"] for f in curve])],
        "session number", "seconds", markers=True, integer_x=True)
    rows = "".join(
        f"<tr><td>{f['n']}</td><td>{_fmt(f['block'])}</td><td>{_fmt(f['duration_s'], ' s')}"
        f"</td><td>{_fmt(f['time_to_adequate_s'], ' s')}</td>"
        f"<td>{_fmt(100 * f['adequate_share'], ' %')}</td>"
        f"<td>{_fmt(f['needle_visible_s'], ' s')}</td><td>{_fmt(f['injection_s'], ' s')}</td>"
        f"<td>{f['alerts']}</td></tr>" for f in curve)
    return (plot + "<table><tr><th>#</th><th>block</th><th>duration</th><th>to adequate"
            "</th><th>adequate</th><th>needle visible</th><th>injection</th><th>alerts</th>"
            f"</tr>{rows}</table>")


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"banner\">{NOT_FOR_CLINICAL_USE}</p>"
            f"{body}</body></html>\n")


def session_report(store: SessionStore, key: int | str, adequate: float = 60.0,
                   deidentify: bool = False, salt: str = "") -> str:
    """HTML for one session (with its operator's learning curve)."""
    s = store.session(key)
    f = session_figures(store, s["id"], adequate)
    name = pseudonym(s["operator"], salt) if deidentify else s["operator"]
    f["operator"] = name
    q = store.quality(s["id"])
    nd = store.needle(s["id"])
    ev = store.events(s["id"])
    t0 = s["start_s"]
    inj, open_at = [], None
    for e in ev:
        if e["kind"] == "injection":
            if e["data"].get("mark") == "start" and open_at is None:
                open_at = e["t_s"]
            elif e["data"].get("mark") == "stop" and open_at is not None:
                inj.append((open_at - t0, e["t_s"] - t0, "injection"))
                open_at = None
    if open_at is not None:
        inj.append((open_at - t0, f["duration_s"], "injection"))
    body = [_figures_table(f)]
    body.append(svg_line_plot(
        "quality-plot", "View quality over time",
        [("quality", [t - t0 for t, _, _ in q], [sc for _, sc, _ in q])],
        "time (s)", "quality (0-100)", y_range=(0, 100),
        hlines=[(adequate, f"adequate {adequate:g}")], spans=inj))
    body.append(svg_line_plot(
        "needle-plot", "Needle tip depth over time (shaded: injection)",
        [("depth, mm", [r["t_s"] - t0 for r in nd],
          [r["depth_mm"] if r["visible"] else None for r in nd])],
        "time (s)", "depth (mm)", invert_y=True, spans=inj))
    alerts = [e for e in ev if e["kind"] in ("alert", "injection", "recording", "node")
              or (e["kind"] == "command_heard" and e["data"].get("role") == "supervisor")]
    if alerts:
        rows = []
        for e in alerts:
            if deidentify:
                text = e["kind"] + (f": {e['data'].get('key')}" if e["data"].get("key") else "")
                if e["kind"] == "command_heard":
                    text = f"supervisor: {e['data'].get('command', '')}"
            else:
                text = e["text"]
            rows.append(f"<tr><td>{e['t_s'] - t0:.1f} s</td><td>{html.escape(e['kind'])}"
                        f"</td><td>{html.escape(text)}</td></tr>")
        body.append("<h2>Alerts, marks and supervisor prompts</h2><table><tr><th>time</th>"
                    "<th>kind</th><th>what</th></tr>" + "".join(rows) + "</table>")
    curve = learning_curve(store, s["operator"], adequate)
    if len(curve) > 1:
        body.append("<h2>Learning curve</h2>" + _curve_html(curve, name))
    if s.get("notes") and not deidentify:
        body.append(f"<h2>Notes</h2><p>{html.escape(s['notes'])}</p>")
    return _page(f"Session {s['uid']}: {f['block']}", "\n".join(body))


def operator_report(store: SessionStore, operator: str, adequate: float = 60.0,
                    deidentify: bool = False, salt: str = "") -> str:
    """HTML for an operator's learning curve across sessions."""
    curve = learning_curve(store, operator, adequate)
    if not curve:
        raise KeyError(f"no sessions of operator {operator!r} ({operator_id(operator)}) in "
                       f"{store.path}")
    name = pseudonym(operator, salt) if deidentify else operator
    return _page(f"Learning curve: {name}", _curve_html(curve, name))


#: event data keys that hold free text (what was heard, node details)
FREE_TEXT_KEYS = ("heard", "detail", "prompt")


def export_session(store: SessionStore, key: int | str, adequate: float = 60.0,
                   deidentify: bool = False, salt: str = "") -> dict:
    """One session as plain data (figures, samples, events), for research exports.

    De-identified: operator -> pseudonym; event texts, notes, source and free-text
    data fields dropped (the event kind, command id, role and numbers stay).
    """
    s = store.session(key)
    f = session_figures(store, s["id"], adequate)
    events = store.events(s["id"])
    session = dict(s)
    if deidentify:
        name = pseudonym(s["operator"], salt)
        session.update(operator=name, notes="", source="")
        f["operator"] = name
        events = [{"t_s": e["t_s"], "kind": e["kind"], "text": "",
                   "data": {k: v for k, v in e["data"].items() if k not in FREE_TEXT_KEYS}}
                  for e in events]
    return {"not_for_clinical_use": True, "session": session, "figures": f,
            "quality": [{"t_s": t, "score": sc, "reason": r}
                        for t, sc, r in store.quality(s["id"])],
            "needle": store.needle(s["id"]), "events": events}


def main(argv: list[str] | None = None) -> int:
    """``assistant report``: write the HTML report; 0 on success, 2 on a usage error."""
    ap = argparse.ArgumentParser(prog="assistant report", description=__doc__.split("\n\n")[0])
    ap.add_argument("session", nargs="?", help="session id or uid")
    ap.add_argument("--operator", help="an operator's learning curve instead of one session")
    ap.add_argument("--db", type=Path, default=None,
                    help="session database (default: the user's data folder)")
    ap.add_argument("--out", type=Path, default=None,
                    help="HTML file to write (default: report-<session|operator>.html)")
    ap.add_argument("--adequate", type=float, default=60.0,
                    help="quality at or above which a view is adequate (default 60)")
    ap.add_argument("--deidentify", action="store_true",
                    help="pseudonymise operator names, drop free text")
    ap.add_argument("--salt", default="", help="salt for the pseudonyms (keep it secret)")
    ap.add_argument("--json", action="store_true",
                    help="write the session's data as JSON instead of the HTML report")
    args = ap.parse_args(argv)
    if (args.session is None) == (args.operator is None):
        ap.print_usage(sys.stderr)
        print("assistant report: give either a SESSION or --operator NAME", file=sys.stderr)
        return 2
    db = args.db or default_db_path()
    if args.out is not None and (args.out.is_dir() or not args.out.parent.is_dir()):
        print(f"assistant report: --out {args.out}: "
              + ("a folder; give a file name" if args.out.is_dir()
                 else f"no folder {args.out.parent}"), file=sys.stderr)
        return 2
    try:
        store = SessionStore(db, create=False)
    except (FileNotFoundError, SessionDbError) as exc:
        print(f"assistant report: {exc}", file=sys.stderr)
        return 2
    try:
        if args.json and args.session is None:
            print("assistant report: --json exports one SESSION", file=sys.stderr)
            return 2
        if args.json:
            text = json.dumps(export_session(store, args.session, args.adequate,
                                             args.deidentify, args.salt), indent=1)
            default_name = f"session-{args.session}.json"
        elif args.session is not None:
            text = session_report(store, args.session, args.adequate, args.deidentify, args.salt)
            default_name = f"report-session-{args.session}.html"
        else:
            text = operator_report(store, args.operator, args.adequate, args.deidentify,
                                   args.salt)
            default_name = f"report-{operator_id(args.operator)}.html"
    except KeyError as exc:
        print(f"assistant report: {exc.args[0]}", file=sys.stderr)
        return 2
    finally:
        store.close()
    out = args.out or Path(default_name)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"assistant report: cannot write {out}: {exc}", file=sys.stderr)
        return 2
    log.info("report written to %s", out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
