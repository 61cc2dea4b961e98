"""``reports/report.html``: one self-contained page per dataset.

Images are embedded as data URIs, styles and the script are inline (the
Content-Security-Policy allows inline ones and nothing else), so the page opens offline and a
stray external reference would show as a console error rather than a silent fetch. A few lines
of plain JavaScript page long card lists (``data-page-size``), apply the filter bars
(``.filters[data-for=<list id>]``: check, class, split and a file-name search, matched against
each card's ``data-checks`` / ``data-classes`` / ``data-splits`` / ``data-names`` JSON lists)
and open a thumbnail larger on click (its ``data-zoom`` picture, else the thumbnail enlarged);
without scripts every card is shown.

Card classes (what tests and people count): ``.issue-card.data-issue`` one per flagged sample
of the clean stage, ``.issue-card.label-issue`` one per label issue (object tasks: one per
flagged object row, ``.object-issue`` with ``data-object``), ``.dup-group`` one per duplicate
group, ``.gallery-card`` one per hard example shown (``.positive`` / ``.negative``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datapipe.config import ReportParams
from datapipe.io.atomic import write_text_atomic
from datapipe.report.charts import esc, not_available
from datapipe.report.history import Numbers, comparison
from datapipe.report.inputs import ReportInputs
from datapipe.report.sections import SECTIONS, Context, Section
from datapipe.report.thumbnails import Thumbnailer, picture_uri

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)

STYLE = """
:root { --fg: #1d232a; --muted: #5c6670; --line: #d9dee3; --bg: #f6f7f9; --card: #fff;
        --error: #c0392b; --warning: #d68910; --info: #2e86c1; --ok: #1e8449; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { position: sticky; top: 0; z-index: 2; background: #24323f; color: #fff;
         padding: 8px 16px; display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; }
header h1 { font-size: 17px; margin: 0 12px 0 0; }
header a { color: #cfe3f5; text-decoration: none; }
header .generated { margin-left: auto; color: #9fb0c0; font-size: 12px; }
main { padding: 8px 16px 48px; max-width: 1400px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
          padding: 4px 16px 16px; margin: 16px 0; }
h2 { font-size: 18px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
h4 { font-size: 13px; margin: 10px 0 4px; color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 2px 8px; text-align: left; }
th { background: #eef1f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: var(--muted); margin: 6px 0; }
.note.na { color: var(--warning); }
.note.ok { color: var(--ok); }
.hists { display: flex; flex-wrap: wrap; gap: 16px 32px; }
.hist { min-width: 260px; flex: 1 1 260px; max-width: 420px; }
.bar-row { display: flex; align-items: center; gap: 6px; font-size: 12px; height: 18px; }
.bar-label { flex: 0 0 130px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { height: 12px; background: #5d9cec; border-radius: 2px; min-width: 1px; }
.bar-n { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 8px; }
.card { display: flex; gap: 8px; width: 330px; border: 1px solid var(--line); border-radius: 4px;
        padding: 6px; background: #fff; }
.card.wide { width: 430px; }
.card.sev-error { border-left: 4px solid var(--error); }
.card.sev-warning { border-left: 4px solid var(--warning); }
.card.sev-info { border-left: 4px solid var(--info); }
.card.gallery-card { width: auto; flex-direction: column; gap: 2px; max-width: 140px; }
.meta { min-width: 0; overflow-wrap: anywhere; }
.path { font-family: ui-monospace, monospace; font-size: 12px; }
.small { font-size: 12px; color: var(--muted); }
.thumb { display: block; flex: none; image-rendering: pixelated; background: #202020;
         border-radius: 2px; }
.thumb.missing { display: flex; align-items: center; justify-content: center; color: #eee;
                 font-size: 12px; background: repeating-linear-gradient(45deg, #555 0 6px,
                 #444 6px 12px); }
.pair { display: flex; gap: 4px; flex: none; }
.checks { margin: 4px 0 0; padding-left: 16px; font-size: 12px; }
.sev { font-size: 11px; padding: 0 4px; border-radius: 3px; color: #fff; }
.sev.error { background: var(--error); } .sev.warning { background: var(--warning); }
.sev.info { background: var(--info); }
.excluded { color: var(--error); }
.labels .given { text-decoration: line-through; color: var(--error); }
.labels .suggested { color: var(--ok); font-weight: 600; }
.dup-group { width: 100%; border-top: 1px solid var(--line); }
.members { display: flex; flex-wrap: wrap; gap: 8px; }
.dup-member { width: 200px; }
.more { align-self: center; color: var(--muted); }
.gallery { border-top: 1px solid var(--line); }
.curves { display: flex; flex-wrap: wrap; gap: 12px; }
.curve { margin: 0; } .curve figcaption { font-weight: 600; font-size: 13px; }
.chart .plot-bg { fill: #fafbfc; stroke: var(--line); }
.chart .axis { font-size: 10px; fill: var(--muted); }
.legend { font-size: 12px; margin: 4px 0; }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 10px;
          border: 1px solid #999; vertical-align: middle; }
.swatch.ignored { background: repeating-linear-gradient(45deg, #5a5a5a 0 3px, #aaa 3px 6px); }
.swatch.box { background: transparent; border: 2px solid; }
.swatch.box.flagged { border-color: #555; box-shadow: 0 0 0 1px #fff, 0 0 0 2px #bbb; }
.swatch.box.dashed { border: 2px dashed #555; }
.issue-kind { font-weight: 600; color: var(--error); }
.pager { display: flex; gap: 8px; align-items: center; margin: 6px 0; font-size: 12px; }
.pager button { font: inherit; padding: 1px 8px; }
img.preview { max-width: 100%; height: auto; image-rendering: auto; }
[hidden] { display: none !important; }
.path .folder { color: var(--muted); }
.path b { font-weight: 600; }
img.thumb { cursor: zoom-in; }
.filters { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; margin: 8px 0;
           font-size: 12px; padding: 6px 8px; background: #eef1f4; border-radius: 4px; }
.filters select, .filters input { font: inherit; }
.filter-count { color: var(--muted); margin-left: auto; }
details.more { align-self: center; font-size: 12px; color: var(--muted); max-width: 260px; }
details.more .names { margin: 4px 0 0; padding-left: 16px; max-height: 200px; overflow: auto; }
.lightbox { position: fixed; inset: 0; z-index: 10; background: rgba(10, 14, 18, 0.88);
            display: flex; flex-direction: column; align-items: center; justify-content: center;
            gap: 8px; cursor: zoom-out; color: #eee; font-size: 13px; }
.lightbox img { width: min(90vw, 80vh, 768px); height: min(90vw, 80vh, 768px); object-fit: contain;
                image-rendering: pixelated; background: #202020; }
"""

# Plain ES5 so any browser runs it: pages, filters, and the larger picture on click.
SCRIPT = """
(function () {
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };
  function paginate(list) {
    var size = parseInt(list.getAttribute('data-page-size'), 10) || 1;
    var pager = document.createElement('div');
    pager.className = 'pager';
    var prev = document.createElement('button');
    var next = document.createElement('button');
    var label = document.createElement('span');
    prev.type = next.type = 'button';
    prev.textContent = '\\u2039 previous';
    next.textContent = 'next \\u203a';
    pager.appendChild(prev); pager.appendChild(label); pager.appendChild(next);
    list.parentNode.insertBefore(pager, list);
    var page = 0, pages = 1;
    function show(p) {
      var items = Array.prototype.filter.call(list.children, function (item) {
        return !item.hasAttribute('data-filtered');
      });
      pages = Math.max(1, Math.ceil(items.length / size));
      page = Math.max(0, Math.min(pages - 1, p));
      each(list.children, function (item) { item.hidden = true; });
      items.forEach(function (item, i) { item.hidden = Math.floor(i / size) !== page; });
      label.textContent = 'page ' + (page + 1) + ' of ' + pages + ' (' + items.length + ')';
      prev.disabled = page === 0;
      next.disabled = page === pages - 1;
      pager.hidden = pages <= 1;
    }
    prev.addEventListener('click', function () { show(page - 1); });
    next.addEventListener('click', function () { show(page + 1); });
    list.repage = function () { show(0); };
    show(0);
  }
  each(document.querySelectorAll('[data-page-size]'), paginate);

  function values(item, key) {
    try { return JSON.parse(item.getAttribute('data-' + key) || '[]'); } catch (e) { return []; }
  }
  function matches(item, want) {
    for (var key in want) {
      var value = want[key];
      if (!value) { continue; }
      var have = values(item, key);
      if (key === 'names') {
        var found = have.some(function (n) { return n.toLowerCase().indexOf(value) >= 0; });
        if (!found) { return false; }
      } else if (have.indexOf(value) < 0) { return false; }
    }
    return true;
  }
  each(document.querySelectorAll('.filters'), function (bar) {
    var list = document.getElementById(bar.getAttribute('data-for'));
    if (!list) { return; }
    var controls = bar.querySelectorAll('[data-filter]');
    var count = bar.querySelector('.filter-count');
    function apply() {
      var want = {};
      each(controls, function (c) {
        var key = c.getAttribute('data-filter');
        want[key] = key === 'names' ? c.value.trim().toLowerCase() : c.value;
      });
      var shown = 0;
      each(list.children, function (item) {
        if (matches(item, want)) { item.removeAttribute('data-filtered'); shown += 1; }
        else { item.setAttribute('data-filtered', ''); }
      });
      count.textContent = shown + ' of ' + list.children.length + ' cards';
      if (list.repage) { list.repage(); }
    }
    each(controls, function (c) {
      c.addEventListener('input', apply);
      c.addEventListener('change', apply);
    });
    apply();
  });

  var box = null, big = null, caption = null;  // made on the first click
  function open(thumb) {
    if (!box) {
      box = document.createElement('div');
      box.className = 'lightbox';
      big = document.createElement('img');
      big.alt = 'enlarged';
      caption = document.createElement('div');
      box.appendChild(big); box.appendChild(caption);
      document.body.appendChild(box);
    }
    big.src = thumb.getAttribute('data-zoom') || thumb.src;
    caption.textContent = thumb.title;
    box.hidden = false;
  }
  document.addEventListener('click', function (event) {
    var target = event.target;
    if (box && box.contains(target)) { box.hidden = true; return; }
    if (target.tagName === 'IMG' && target.classList.contains('thumb')) { open(target); }
  });
  document.addEventListener('keydown', function (event) {
    if (event.key === 'Escape' && box) { box.hidden = true; }
  });
})();
"""


def build_report(
    inputs: ReportInputs,
    *,
    options: ReportParams,
    thumbs: Thumbnailer,
    previous: dict[str, object] | None,
    numbers: Numbers,
    generated: str = "",
) -> str:
    """The whole page as one string; ``previous`` is the history entry to compare with."""
    ctx = Context(options=options, thumbs=thumbs)
    sections = [make(inputs, ctx) for make in SECTIONS]
    sections += [_preview(inputs, options), comparison(previous, numbers)]
    return page(f"datapipe report — {inputs.name}", sections, generated=generated)


def _preview(inputs: ReportInputs, options: ReportParams) -> Section:
    title = "Augmentation preview"
    path = inputs.augment_preview
    uri = picture_uri(path, jpeg_quality=options.jpeg_quality) if path is not None else None
    if uri is None:
        missing = path if path is not None else inputs.missing["augment_preview"]
        return Section("augment", title, not_available("augmentation preview", missing))
    body = (
        '<p class="note">each row: a training sample, then augmented views of it</p>'
        f'<img class="preview" src="{uri}" alt="augmentation preview">'
    )
    return Section("augment", title, body)


def page(title: str, sections: Sequence[Section], *, generated: str = "") -> str:
    """Sections -> a complete HTML document with a navigation bar."""
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    stamp = f'<span class="generated">{esc(generated)}</span>' if generated else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>"
        f"<header><h1>{esc(title)}</h1>{nav}{stamp}</header>\n<main>{body}</main>\n"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(path: Path, html: str) -> Path:
    return write_text_atomic(path, html)
