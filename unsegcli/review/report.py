"""The review report: overlay PNGs, JPEG thumbnails, summary plots and one static index.html.

The page works offline from the folder it is in: CSS and the small grid script are inline, images are
linked by relative path, and the per-image facts are embedded as JSON that the script pages and sorts
(only the current page's thumbnails exist in the DOM, and they load lazily). Overlays are drawn in
worker processes, streamed, for the images the report shows; plots cover every input image.
"""

from __future__ import annotations

import html
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import numpy as np

from ..evaluation.corloc import CORLOC_IOU, CorLocResult
from .records import FLAGS, FlagRules, ReviewItem, compute_flags

SortKey = Literal["name", "boxes", "score", "area", "iou", "flags"]
SORT_KEYS: dict[str, str] = {  # key -> what the grid sorts by (and its natural direction)
    "name": "name (A to Z)",
    "boxes": "number of boxes (most first)",
    "score": "lowest box score (lowest first)",
    "area": "largest box area (largest first)",
    "iou": "CorLoc IoU (worst first)",
    "flags": "number of flags (most first)",
}
STATIC_FLAG_LIST = 200  # names listed per flag in the page itself; the grid's filter shows them all
CACHE_NAME = "drawn.json"  # output stem -> fingerprint of what its overlay shows: re-runs redraw only changes
DRAWING_VERSION = 1  # part of every fingerprint: bump when the overlay's look changes


@dataclass(frozen=True)
class ReportOptions:
    title: str = "unseg review"
    source: str = ""  # what the items came from, shown in the header
    sample: int | None = None  # draw this many images, chosen at random with ``seed`` (all when None)
    seed: int = 0
    only_flagged: bool = False
    sort: SortKey = "name"  # the grid's initial order
    page_size: int = 48
    thumb_side: int = 320
    overlay_side: int = 1280  # overlays larger than this are drawn shrunk (PNG size stays sane)
    threshold: float = 0.5  # soft-mask tint cut (the one `unseg boxes` used)
    workers: int = 0
    redraw: bool = False  # draw every overlay even when an identical one exists


@dataclass
class ReportSummary:
    index: Path
    images: int
    shown: int
    drawn: int  # overlays drawn by this run (the others were up to date)
    boxes: int
    flagged: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    corloc: float | None = None  # percent, over the GT images, as `unseg corloc` counts it


def select(items: list[ReviewItem], sample: int | None, seed: int, only_flagged: bool = False) -> list[int]:
    """Indices of the items the report draws, in input order: a seeded random sample (the same
    seed gives the same images on every run and machine), optionally of the flagged ones only."""
    pool = [i for i, it in enumerate(items) if it.flags or not only_flagged]
    if sample is not None and sample < len(pool):
        pool = sorted(random.Random(seed).sample(pool, sample))
    return pool


def output_stem(name: str, taken: set[str]) -> str:
    """A relative output path (no extension) for an image name that cannot leave the report
    folder: absolute parts, '.' and '..' are dropped; clashes get a ~k suffix."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    stem = "/".join(parts) or "image"
    stem = os.path.splitext(stem)[0] or "image"
    out, k = stem, 1
    while out.lower() in taken:
        k += 1
        out = f"{stem}~{k}"
    taken.add(out.lower())
    return out


# --- drawing (worker processes) ----------------------------------------------------------------------


@dataclass(frozen=True)
class RenderJob:
    position: int
    item: ReviewItem
    overlay: str  # absolute output paths
    thumb: str
    overlay_side: int
    thumb_side: int
    threshold: float


def _rles_to_labels(rles: list[dict]) -> np.ndarray:
    """Per-object RLEs -> one label map, object k+1 where RLE k is set (later objects on top)."""
    from pycocotools import mask as mask_utils

    encoded = [
        {"size": r["size"], "counts": r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]}
        for r in rles
    ]
    masks = mask_utils.decode(encoded)  # (H, W, N)
    labels = np.zeros(masks.shape[:2], np.uint8)
    for k in range(min(masks.shape[2], 255)):
        labels[masks[:, :, k] > 0] = k + 1
    return labels


def render_item(job: RenderJob) -> None:
    """Draw one item's overlay and thumbnail to their files. Raises InputError (or anything the
    decoders raise) when it cannot."""
    import cv2

    from ..errors import InputError
    from ..io.files import atomic_write_bytes
    from ..io.images import decode_image
    from ..labels.components import read_box_mask
    from .overlay import CANVAS, draw_overlay, fit, resize_labels, scale_boxes

    it = job.item
    mask, instances = (None, False)
    if it.mask_path is not None:
        kind, mask = read_box_mask(it.mask_path)
        instances = kind == "instances"
    elif it.rles:
        mask, instances = _rles_to_labels(it.rles), True
    if it.image_path is not None:
        image = decode_image(it.image_path)
    else:  # no image folder given: draw on a grey canvas of the labels' frame
        if it.size is not None:
            w, h = it.size
        elif mask is not None:
            h, w = mask.shape
        else:
            raise InputError(f"{it.name}: no image and no image size to draw on")
        image = np.empty((h, w, 3), np.uint8)
        image[:] = CANVAS
    full_wh = (image.shape[1], image.shape[0])
    image = fit(image, job.overlay_side)
    wh = (image.shape[1], image.shape[0])
    if mask is not None:
        mask = resize_labels(mask, *wh)
    boxes = scale_boxes(it.boxes, it.size or full_wh, wh)
    gt = scale_boxes(it.gt_boxes, it.gt_size or full_wh, wh) if it.gt_boxes is not None else None
    hits = it.ious >= CORLOC_IOU if it.ious is not None else None
    over = draw_overlay(image, mask, boxes, it.scores, gt, hits, instances=instances, threshold=job.threshold)
    ok1, png = cv2.imencode(".png", cv2.cvtColor(over, cv2.COLOR_RGB2BGR))
    ok2, jpg = cv2.imencode(
        ".jpg", cv2.cvtColor(fit(over, job.thumb_side), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    if not (ok1 and ok2):  # pragma: no cover - OpenCV only fails on impossible shapes
        raise ValueError("could not encode the overlay")
    atomic_write_bytes(job.overlay, png.tobytes())
    atomic_write_bytes(job.thumb, jpg.tobytes())


def _describe(job: RenderJob) -> str:
    return job.item.image_path or job.item.mask_path or job.item.name


def fingerprint(job: RenderJob) -> str:
    """Everything an overlay depends on: its input files (path, size, mtime), the drawn facts and
    the drawing options. Equal fingerprints mean an existing overlay can be kept."""
    import hashlib

    it = job.item
    h = hashlib.sha1(str(DRAWING_VERSION).encode())
    for path in (it.image_path, it.mask_path):
        if path is not None:
            try:
                st = os.stat(path)
            except OSError:
                return ""  # unreadable: never cached, the drawing reports why
            h.update(os.fsencode(path) + f"\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for arr in (it.boxes, it.scores, it.gt_boxes, it.ious):
        h.update(b"-" if arr is None else np.ascontiguousarray(arr, np.float64).tobytes())
        h.update(b"|")
    h.update(json.dumps([it.size, it.gt_size, it.rles, job.overlay_side, job.thumb_side, job.threshold]).encode())
    h.update(b"-" if it.corloc is None else json.dumps(it.corloc).encode())
    return h.hexdigest()


def _read_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def render_all(jobs: list[RenderJob], workers: int, advance: Callable[[], None]) -> dict[int, str]:
    """Draw every job (in a fork pool when workers > 1) -> {position: error message}."""
    from ..parallel import Failed, parallel_map

    errors: dict[int, str] = {}
    for job, r in zip(jobs, parallel_map(render_item, jobs, workers, describe=_describe, chunksize=4), strict=True):
        if isinstance(r, Failed):
            errors[job.position] = r.message
        advance()
    return errors


# --- plots (matplotlib, Agg, static SVG) -------------------------------------------------------------


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.8), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> None:
    import io

    import matplotlib

    from ..io.files import atomic_write_bytes

    buf = io.BytesIO()
    # no timestamp, and element ids from a fixed salt instead of random ones: same inputs, same file
    with matplotlib.rc_context({"svg.hashsalt": "unseg"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    atomic_write_bytes(path, buf.getvalue())


def write_plots(items: list[ReviewItem], folder: Path, corloc: float | None = None) -> list[tuple[str, str]]:
    """Summary plots over all items -> [(title, file name)]; ``corloc`` (percent) titles the IoU plot."""
    plots = []
    counts = np.asarray([it.n_boxes for it in items], np.int64)
    fig, ax = _figure()
    top = int(counts.max(initial=0))
    ax.bar(np.arange(top + 1), np.bincount(counts, minlength=top + 1), color="#4c78a8")
    ax.set(xlabel="boxes in the image", ylabel="images", title="Boxes per image")
    ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, folder / "boxes_per_image.svg")
    plots.append(("Boxes per image", "boxes_per_image.svg"))

    areas = np.concatenate([it.area_fractions() for it in items] or [np.zeros(0)])
    areas = areas[~np.isnan(areas)]
    if len(areas):
        fig, ax = _figure()
        ax.hist(100 * areas, bins=20, range=(0, 100), color="#f58518")
        ax.set(xlabel="box area (% of the image)", ylabel="boxes", title="Box area")
        _save(fig, folder / "box_area.svg")
        plots.append(("Box area", "box_area.svg"))

    scores = np.concatenate([it.scores for it in items] or [np.zeros(0)])
    scores = scores[~np.isnan(scores)]
    if len(scores):
        fig, ax = _figure()
        ax.hist(scores, bins=20, range=(0, 1), color="#54a24b")
        ax.set(xlabel="box score", ylabel="boxes", title="Scores")
        _save(fig, folder / "scores.svg")
        plots.append(("Scores", "scores.svg"))

    ious = np.asarray([it.best_iou for it in items if it.best_iou is not None], np.float64)
    if len(ious):
        fig, ax = _figure()
        ax.hist(ious, bins=20, range=(0, 1), color="#b279a2")
        ax.axvline(CORLOC_IOU, color="#e45756", linestyle="--", label=f"CorLoc cut {CORLOC_IOU}")
        ax.set(
            xlabel="IoU of the CorLoc box with the best GT box",
            ylabel="images",
            title="CorLoc IoU" + (f" (CorLoc {corloc:.1f}%)" if corloc is not None else ""),
        )
        ax.legend(loc="upper left")
        _save(fig, folder / "corloc_iou.svg")
        plots.append(("CorLoc IoU", "corloc_iou.svg"))
    return plots


# --- the page ----------------------------------------------------------------------------------------


def _num(v: float | None, digits: int) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)


def _text(s: object) -> str:
    """Text that encodes as UTF-8: a file name that is not valid UTF-8 (bytes of another locale, held as
    surrogate escapes) shows those bytes as \\xNN escapes instead of failing the page."""
    text = str(s)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (a JSON "\\ud800")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _url(path: str) -> str:
    """A relative link to an output file: the bytes of its name on disk, percent-encoded."""
    try:
        return quote(path.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return quote(path.encode("utf-8", "backslashreplace"))


def _record(it: ReviewItem, stem: str | None) -> dict:
    """The per-image facts the grid shows (short keys: 100k of them are embedded in the page)."""
    return {
        "n": _text(it.name),
        "o": _url(f"overlays/{stem}.png") if stem else None,
        "t": _url(f"thumbs/{stem}.jpg") if stem else None,
        "wh": list(it.size) if it.size else None,
        "b": it.n_boxes,
        "s": [_num(v, 3) for v in it.scores],
        "a": [_num(v, 4) for v in it.area_fractions()],
        "p": [_num(v, 0) for v in it.areas],
        "g": None if it.gt_boxes is None else int(len(it.gt_boxes)),
        "i": _num(it.best_iou, 3),
        "h": it.hit,
        "f": list(it.flags),
        "e": None if it.error is None else _text(it.error),
    }


def _json_for_script(obj: object) -> str:
    """JSON that cannot end its <script> element: <, > and & escaped as JSON \\u escapes."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(s: object) -> str:
    return html.escape(_text(s), quote=True)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:.8em 0 .2em} h2{font-size:1.1em;margin:1.2em 0 .4em}
.muted{color:#666} table.sum{border-collapse:collapse} table.sum td{padding:.15em .8em .15em 0}
.plots{display:flex;flex-wrap:wrap;gap:.8em} .plots img{width:320px;background:#fff;border:1px solid #ddd}
.legend span{display:inline-block;padding:0 .5em;margin-right:.4em;border-radius:3px;color:#000}
.controls{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
.controls label{margin-right:1em} button{margin:0 .2em}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:.8em;margin-top:.8em}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:.4em;font-size:12px;overflow-wrap:anywhere}
.card.flagged{border-color:#e45756} .card img{width:100%;height:200px;object-fit:contain;background:#eee}
.noimg{height:200px;display:flex;align-items:center;justify-content:center;background:#eee;color:#a00;padding:.5em}
.name{font-weight:600;margin:.3em 0 .1em} .flag{display:inline-block;background:#e45756;color:#fff;
border-radius:3px;padding:0 .35em;margin:.15em .2em 0 0} .err{color:#a00}
details ul{columns:3;margin:.3em 0} details li a{color:#225}
"""

JS = """
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("review-data").textContent);
  const $ = (id) => document.getElementById(id);
  const present = (xs) => xs.filter((v) => v !== null);
  const KEYS = {  // key -> [value (null sorts last), natural direction]
    name: [(it) => it.n, 1],
    boxes: [(it) => it.b, -1],
    score: [(it) => { const s = present(it.s); return s.length ? Math.min(...s) : null; }, 1],
    area: [(it) => { const a = present(it.a); return a.length ? Math.max(...a) : null; }, -1],
    iou: [(it) => it.i, 1],
    flags: [(it) => it.f.length, -1],
  };
  let view = [];
  let page = 0;
  const order = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  function apply() {
    const flag = $("filter").value;
    const [value, natural] = KEYS[$("sort").value];
    const dir = $("reverse").checked ? -natural : natural;
    view = D.items.filter((it) => flag === "all" || it.f.includes(flag));
    view.sort((x, y) => {
      const a = value(x), b = value(y);
      if (a === null || b === null) return a === b ? order(x.n, y.n) : (a === null ? 1 : -1);
      return order(a, b) * dir || order(x.n, y.n);
    });
    page = 0;
    draw();
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const fmt = (xs, f, most) => xs.slice(0, most).map((v) => (v === null ? "-" : f(v))).join(" ")
    + (xs.length > most ? " ..." : "");
  function card(it) {
    const c = el("div", it.f.length ? "card flagged" : "card");
    if (it.t) {
      const a = el("a");
      a.href = it.o;
      a.target = "_blank";
      const img = el("img");
      img.loading = "lazy";
      img.src = it.t;
      img.alt = it.n;
      a.appendChild(img);
      c.appendChild(a);
    } else {
      c.appendChild(el("div", "noimg", it.e || "not drawn"));
    }
    const name = el("div", "name", it.n);
    name.title = it.n;
    c.appendChild(name);
    let facts = it.b + (it.b === 1 ? " box" : " boxes") + (it.wh ? " \\u00b7 " + it.wh[0] + "\\u00d7" + it.wh[1] : "");
    if (it.g !== null) facts += " \\u00b7 GT " + it.g + " \\u00b7 IoU " + it.i.toFixed(2) + (it.h ? " hit" : " miss");
    c.appendChild(el("div", "", facts));
    if (it.b) {
      if (present(it.s).length) c.appendChild(el("div", "", "scores " + fmt(it.s, (v) => v.toFixed(2), 8)));
      c.appendChild(el("div", "", "areas " + fmt(it.a, (v) => (100 * v).toFixed(1) + "%", 8)
        + " (" + fmt(it.p, (v) => String(v), 8) + " px)"));
    }
    const flags = el("div");
    for (const f of it.f) flags.appendChild(el("span", "flag", f));
    c.appendChild(flags);
    if (it.e && it.t) c.appendChild(el("div", "err", it.e));
    return c;
  }
  function draw() {
    const size = Number($("pagesize").value);
    const pages = Math.max(1, Math.ceil(view.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    $("grid").replaceChildren(...view.slice(page * size, (page + 1) * size).map(card));
    $("pageinfo").textContent = "page " + (page + 1) + " / " + pages + " \\u00b7 " + view.length + " images";
  }
  $("sort").value = D.sort;
  $("pagesize").value = String(D.pageSize);
  for (const id of ["filter", "sort", "reverse"]) $(id).addEventListener("change", apply);
  $("pagesize").addEventListener("change", draw);
  $("prev").addEventListener("click", () => { page -= 1; draw(); });
  $("next").addEventListener("click", () => { page += 1; draw(); });
  apply();
})();
"""


def _flag_lists(items: list[ReviewItem], stems: dict[int, str]) -> str:
    parts = []
    for flag in FLAGS:
        hits = [i for i, it in enumerate(items) if flag in it.flags]
        if not hits:
            continue
        lis = []
        for i in hits[:STATIC_FLAG_LIST]:
            name = _e(items[i].name)
            stem = stems.get(i)
            link = _e(_url(f"overlays/{stem}.png"))
            lis.append(f'<li><a href="{link}">{name}</a></li>' if stem else f"<li>{name}</li>")
        more = (
            f"<p class=muted>... and {len(hits) - STATIC_FLAG_LIST} more: filter the grid by '{_e(flag)}'.</p>"
            if len(hits) > STATIC_FLAG_LIST
            else ""
        )
        count = f"{len(hits)} image" + ("s" if len(hits) != 1 else "")
        parts.append(
            f"<details{' open' if len(hits) <= 30 else ''}><summary><b>{_e(flag)}</b> · {count}</summary>"
            f"<ul>{''.join(lis)}</ul>{more}</details>"
        )
    return "\n".join(parts) or "<p class=muted>Nothing flagged.</p>"


def _problem_list(problems: list[str]) -> str:
    """Failures that belong to no one image (a malformed annotation, an ambiguous mask), listed in full."""
    if not problems:
        return ""
    return "<h2>Problems</h2><ul>" + "".join(f"<li class=err>{_e(p)}</li>" for p in problems) + "</ul>\n"


def _page(
    items: list[ReviewItem],
    shown: list[int],
    stems: dict[int, str],
    plots: list[tuple[str, str]],
    summary: ReportSummary,
    opts: ReportOptions,
    rules: FlagRules,
    corloc: CorLocResult | None,
    problems: list[str],
) -> str:
    from .overlay import GT, HIT, MISS, OUTLINE, PRED, TINT

    data = {"sort": opts.sort, "pageSize": opts.page_size, "items": [_record(items[i], stems.get(i)) for i in shown]}
    rows: list[tuple[str, object]] = [
        ("images", summary.images),
        ("shown in this report", summary.shown),
        ("boxes", summary.boxes),
    ]
    rows += [(f"flagged {f}", n) for f, n in summary.flagged.items() if n]
    if corloc is not None:
        rows.append(
            ("CorLoc", f"{corloc.corloc:.2f}% of {corloc.images} GT images (IoU >= {CORLOC_IOU} with any GT box)")
        )
        if corloc.missing:
            rows.append(("GT images without a predicted box (misses)", corloc.missing))
    if problems:
        rows.append(("inputs that failed, not tied to one image", len(problems)))
    table = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    plot_imgs = "".join(f'<img src="plots/{_e(quote(f))}" alt="{_e(t)}" title="{_e(t)}">' for t, f in plots)

    def swatch(c: tuple[int, int, int], text: str, ink: str = "#000") -> str:
        return f'<span style="background:rgb{c};color:{ink}">{_e(text)}</span>'

    legend = (
        swatch(TINT, "mask")
        + swatch((60, 60, 60), "outline", f"rgb{OUTLINE}")
        + swatch(PRED, "box · score")
        + swatch(GT, "GT box")
        + swatch(HIT, "hit (IoU >= 0.5)")
        + swatch(MISS, "miss")
    )
    rules_text = (
        f"no box; more than {rules.many_boxes} boxes; a box within {rules.border_px:g} px of the border; "
        f"a score below {rules.low_score:g}" + ("; a CorLoc miss" if summary.corloc is not None else "")
    )
    sorts = "".join(f'<option value="{_e(k)}">{_e(v)}</option>' for k, v in SORT_KEYS.items())
    filters = '<option value="all">all images</option>' + "".join(
        f'<option value="{_e(f)}">{_e(f)} ({summary.flagged.get(f, 0)})</option>'
        for f in FLAGS
        if summary.flagged.get(f)
    )
    sizes = "".join(f'<option value="{n}">{n}</option>' for n in sorted({24, 48, 96, 200, opts.page_size}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(opts.title)}</title><style>{CSS}</style></head>
<body>
<h1>{_e(opts.title)}</h1>
<p class="muted">{_e(opts.source)}</p>
<table class="sum">{table}</table>
{_problem_list(problems)}<h2>Summary</h2>
<div class="plots">{plot_imgs}</div>
<h2>Worth a look</h2>
<p class="muted">Flagged: {_e(rules_text)}.</p>
{_flag_lists(items, stems)}
<h2>Images</h2>
<p class="legend">{legend} <span class="muted">click a thumbnail for the full overlay</span></p>
<div class="controls">
<label>show <select id="filter">{filters}</select></label>
<label>sort by <select id="sort">{sorts}</select></label>
<label><input type="checkbox" id="reverse"> reverse</label>
<label>per page <select id="pagesize">{sizes}</select></label>
<button id="prev">&larr; prev</button><button id="next">next &rarr;</button> <span id="pageinfo"></span>
</div>
<noscript><p>The image grid needs JavaScript; the overlays are in overlays/.</p></noscript>
<div id="grid"></div>
<script type="application/json" id="review-data">{_json_for_script(data)}</script>
<script>{JS}</script>
</body></html>
"""


def write_report(
    items: list[ReviewItem],
    out_dir: str | os.PathLike,
    opts: ReportOptions | None = None,
    rules: FlagRules | None = None,
    corloc: CorLocResult | None = None,
    problems: list[str] | None = None,
    on_error: Callable[[str], None] = lambda m: None,
    on_start: Callable[[int], Callable[[], None]] = lambda n: lambda: None,
) -> ReportSummary:
    """Flag every item, draw the selected ones, write plots and index.html under ``out_dir``.

    ``corloc``: the items' CorLoc against GT as ``review.sources.score_against_gt`` (= `unseg corloc`)
    scored it; ``problems``: failures tied to no item (shown on the page and counted in ``failed``).

    ``on_start(total)`` is called once drawing starts and returns the per-image progress callback.
    Items that fail to draw are reported through ``on_error``, flagged 'failed', and still listed.
    """
    from ..io.files import atomic_write_bytes

    opts = opts or ReportOptions()
    rules = rules or FlagRules()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for it in items:
        it.flags = compute_flags(it, rules)
    shown = select(items, opts.sample, opts.seed, opts.only_flagged)
    taken: set[str] = set()
    stems: dict[int, str] = {}
    jobs = []
    for i in shown:
        if items[i].error is not None:  # e.g. its image was not found: listed, nothing to draw
            continue
        stems[i] = output_stem(items[i].name, taken)
        jobs.append(
            RenderJob(
                i,
                items[i],
                str(out / "overlays" / f"{stems[i]}.png"),
                str(out / "thumbs" / f"{stems[i]}.jpg"),
                opts.overlay_side,
                opts.thumb_side,
                opts.threshold,
            )
        )
    cache = _read_cache(out / CACHE_NAME)
    todo = []
    for job in jobs:
        stem = stems[job.position]
        fp = fingerprint(job)
        if (
            opts.redraw
            or not fp
            or cache.get(stem) != fp
            or not os.path.isfile(job.overlay)
            or not os.path.isfile(job.thumb)
        ):
            cache[stem] = fp
            todo.append(job)
    errors = render_all(todo, opts.workers, on_start(len(todo)))
    for i, err in sorted(errors.items()):
        items[i].error = err
        items[i].flags = compute_flags(items[i], rules)
        cache.pop(stems.pop(i), None)
        on_error(err)
    atomic_write_bytes(out / CACHE_NAME, json.dumps(cache, sort_keys=True).encode())
    (out / "plots").mkdir(exist_ok=True)
    problems = list(problems or [])
    plots = write_plots(items, out / "plots", corloc.corloc if corloc is not None else None)
    summary = ReportSummary(
        index=out / "index.html",
        images=len(items),
        shown=len(shown),
        drawn=len(todo) - len(errors),
        boxes=sum(it.n_boxes for it in items),
        flagged={f: sum(f in it.flags for it in items) for f in FLAGS},
        failed=problems + [it.error for it in items if it.error is not None],
        corloc=corloc.corloc if corloc is not None else None,
    )
    page = _page(items, shown, stems, plots, summary, opts, rules, corloc, problems)
    atomic_write_bytes(summary.index, page.encode("utf-8"))
    return summary
