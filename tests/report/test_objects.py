"""The report of a detection run: boxes drawn on the cards (flagged object, dashed suggestion,
instance masks), one label-issue card per flagged object worst first, COCO metrics and
per-class AP, the object galleries, object checks on integrity cards, and the size budget.

The synthetic run (``make_run(task="detection", size=64, flat=True)``): flat grey 64 px images
shown at 96 px (1.5 cell pixels per image pixel), three objects per image (see
``conftest.OBJECT_PLACES``): object 0 of class c0 at [8, 8, 24, 24], object 1 of c1 at
[40, 8, 56, 24], object 2 of c2 at [8, 40, 24, 56] with a triangle polygon.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml

from datapipe.config import ReportParams
from datapipe.report.boxes import MASK_ALPHA, RIM_RGB
from datapipe.report.render import PALETTE
from stages import report as report_stage
from tests.report.conftest import FLAT_GREY, Page, SyntheticRun, decode_uri, make_run, render

GREY = [FLAT_GREY] * 3


def _section(html: str, section: str) -> str:
    return html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]


def _cards(html: str, section: str, cls: str) -> list[str]:
    part = _section(html, section)
    return re.findall(rf'<div class="card [^"]*{cls}[^"]*".*?</div></div>', part)


def _card_of(html: str, section: str, cls: str, **attrs: str) -> str:
    found = [
        c for c in _cards(html, section, cls)
        if all(f'data-{k}="{v}"' in c for k, v in attrs.items())
    ]  # fmt: skip
    assert len(found) == 1, f"expected one {cls} card with {attrs}, got {len(found)}"
    return found[0]


def _thumb(card: str) -> np.ndarray:
    return decode_uri(_found(r'<img class="thumb" src="(data:[^"]+)"', card))


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.S)
    assert match is not None, pattern
    return match.group(1)


def _rows(part: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after ``heading``, as cell texts."""
    body = _found(re.escape(heading) + r".*?<tbody>(.*?)</tbody>", part)
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows]


# ---------------------------------------------------------------- label issues


def test_one_label_issue_card_per_flagged_object_row_worst_first(det_run: SyntheticRun) -> None:
    html = render(det_run)
    cards = _cards(html, "label-issues", "label-issue")
    assert len(cards) == det_run.label_issues == Page(html).count("issue-card", "label-issue")
    # the file lists box scores best first; the page turns it round (the missing box: no id)
    assert [_found(r'data-object="([^"]*)"', c) for c in cards] == ["31", "27", "", "22", "18"]
    kinds = [_found(r'class="issue-kind">(\w+)<', c) for c in cards]
    assert kinds == ["mislocated", "wrong_class", "missing", "mislocated", "wrong_class"]


def test_label_issue_cards_cap_at_max_cards(det_run: SyntheticRun) -> None:
    html = render(det_run, ReportParams(max_cards=2))
    assert len(_cards(html, "label-issues", "label-issue")) == 2
    assert "5 flagged objects in 5 images, lowest box score first; the first 2 shown" in html


def test_wrong_class_card_names_given_and_suggested_class(det_run: SyntheticRun) -> None:
    card = _card_of(render(det_run), "label-issues", "label-issue", object="27")
    assert '<span class="given">c0</span> → <span class="suggested">c1</span>' in card
    assert "[8.0, 8.0, 24.0, 24.0]" in card  # the given box, no suggestion
    assert "object: <b>keep</b>" in card and "image: <b>keep</b>" in card


def test_flagged_box_is_drawn_thick_in_its_class_colour_inside_a_white_rim(
    det_run: SyntheticRun,
) -> None:
    thumb = _thumb(_card_of(render(det_run), "label-issues", "label-issue", object="27"))
    # object 27 = image 9's object 0, c0, at [8, 8, 24, 24] -> cell [12, 12, 35, 35]
    assert thumb[20, 12].tolist() == thumb[20, 13].tolist() == PALETTE[0].tolist()
    assert thumb[20, 11].tolist() == list(RIM_RGB)
    assert thumb[20, 14].tolist() == GREY
    # the image's other boxes: one pixel in their own class colour (object 1, c1, x0 = 60)
    assert thumb[20, 60].tolist() == PALETTE[1].tolist()
    assert thumb[20, 61].tolist() == GREY


def test_suggested_box_is_dashed_below_the_mislocated_one(det_run: SyntheticRun) -> None:
    card = _card_of(render(det_run), "label-issues", "label-issue", object="22")
    assert "[40.0, 8.0, 56.0, 24.0] → [40.0, 24.0, 56.0, 40.0]" in card
    thumb = _thumb(card)
    # the suggestion [40, 24, 56, 40] -> cell [60, 36, 83, 59], c1 (the given class), dashed
    # in runs of 3 from row 36: rows 42-44 drawn, 45-47 not
    column = [thumb[y, 60].tolist() == PALETTE[1].tolist() for y in range(42, 48)]
    assert column == [True, True, True, False, False, False]
    assert thumb[45, 60].tolist() == GREY


def test_missing_box_card_shows_only_the_suggestion(det_run: SyntheticRun) -> None:
    card = _card_of(render(det_run), "label-issues", "label-issue", object="")
    assert '<span class="given">no box</span> → <span class="suggested">c2</span>' in card
    thumb = _thumb(card)
    # suggested [40, 40, 56, 56] of c2 -> cell [60, 60, 83, 83]
    assert thumb[61, 60].tolist() == PALETTE[2].tolist()
    assert thumb[64, 60].tolist() == GREY  # a gap between dashes
    assert thumb[20, 11].tolist() == GREY  # no object is flagged: no rim


def test_instance_mask_is_a_translucent_overlay(det_run: SyntheticRun) -> None:
    thumb = _thumb(_card_of(render(det_run), "label-issues", "label-issue", object="27"))
    # object 2's triangle [[8, 40], [24, 40], [16, 56]]: cell (64, 24) is inside it
    blend = np.floor((1 - MASK_ALPHA) * FLAT_GREY + MASK_ALPHA * PALETTE[2] + 0.5).astype(int)
    assert thumb[64, 24].tolist() == blend.tolist()
    assert thumb[80, 14].tolist() == GREY  # below the triangle's sides, inside its box


def test_label_issue_summary_counts_issues_per_class(det_run: SyntheticRun) -> None:
    rows = _rows(_section(render(det_run), "label-issues"), "<h3>Flagged objects</h3>")
    assert rows == [  # issue, c0, c1, c2, total
        ["wrong_class", "2", "0", "0", "2"],
        ["mislocated", "0", "2", "0", "2"],
        ["missing", "0", "0", "1", "1"],  # a missing box counts under its suggested class
    ]


def test_label_issue_filters_offer_the_issue_kinds(det_run: SyntheticRun) -> None:
    part = _section(render(det_run), "label-issues")
    bar = re.search(r'<div class="filters" data-for="label-cards">.*?</div>', part)
    assert bar is not None
    assert "<label>issue <select" in bar.group(0)
    options = re.findall(r'<option value="(\w+)">', bar.group(0).split("</select>")[0])
    assert options == ["wrong_class", "mislocated", "missing"]


# ---------------------------------------------------------------- metrics


def test_oof_coco_metrics_and_per_class_ap_in_the_label_issue_section(
    det_run: SyntheticRun,
) -> None:
    part = _section(render(det_run), "label-issues")
    coco = _rows(part, "<h3>Out-of-fold detection quality</h3>")
    assert coco[:2] == [["AP (IoU .50:.95)", "oof_map", "0.4"], ["AP50", "oof_map_50", "0.7"]]
    assert ["AP large (&gt; 96² px)", "oof_map_large", "—"] in coco  # None: undefined
    per_class = _rows(part, "<h4>AP per class (out of fold)</h4>")
    # class, OOF AP, objects, hard / easy positives, hard negatives (4, 1, 4 per class)
    assert [r[:2] for r in per_class] == [["c0", "0.1"], ["c1", "0.2"], ["c2", "0.3"]]
    assert all(r[3:] == ["4", "1", "4"] for r in per_class)


def test_eval_shows_coco_metrics_and_every_class_with_its_ap(det_run: SyntheticRun) -> None:
    (det_run.run / "metrics" / "eval.json").write_text(json.dumps({
        "map": 0.5, "map_50": 0.75, "map_small": None, "mar_100": 0.6, "test_objects": 24,
        "map_per_class": {"c2": 0.25, "c0": 0.5, "c1": None},
    }))  # fmt: skip
    part = _section(render(det_run), "training")
    coco = _rows(part, "<h3>Evaluation on the test split</h3>")
    assert coco == [
        ["AP (IoU .50:.95)", "map", "0.5"], ["AP50", "map_50", "0.75"],
        ["AP small (&lt; 32² px)", "map_small", "—"], ["AR, 100 detections", "mar_100", "0.6"],
    ]  # fmt: skip
    per_class = _rows(part, "<h4>AP per class (test split)</h4>")
    # in the run's class order; c1 has no AP (no test object), each class has 8 test objects
    assert per_class == [["c0", "0.5", "8"], ["c1", "—", "8"], ["c2", "0.25", "8"]]
    assert re.search(r"<td>test_objects</td><td class=\"num\">24</td>", part)


def test_a_class_without_an_ap_entry_is_still_listed(det_run: SyntheticRun) -> None:
    (det_run.run / "metrics" / "eval.json").write_text(
        json.dumps({"map": 0.5, "map_per_class": {"c0": 0.5}})
    )
    per_class = _rows(_section(render(det_run), "training"), "<h4>AP per class (test split)</h4>")
    assert [r[:2] for r in per_class] == [["c0", "0.5"], ["c1", "—"], ["c2", "—"]]


# ---------------------------------------------------------------- galleries


def test_gallery_shows_hard_positives_and_negatives_per_class(det_run: SyntheticRun) -> None:
    html = render(det_run, ReportParams(gallery_per_class=3))
    page = Page(html)
    n = len(det_run.classes)
    assert page.count("gallery-card", "positive", "hard_positive") == 3 * n
    assert page.count("gallery-card", "negative", "hard_negative") == 3 * n
    assert "easy_positive" not in _section(html, "hard")  # easy ones are counted, not shown
    assert "hard positives: 4 (3 shown)" in html


def test_gallery_role_table_counts_every_object_row(det_run: SyntheticRun) -> None:
    rows = _rows(_section(render(det_run), "hard"), "Hard positives and hard negatives")
    # easy, hard positive, then hard negatives by where they fired (4 per class: 2, 1, 1)
    assert rows == [[c, "1", "4", "2", "1", "1"] for c in det_run.classes]


def test_hard_positive_card_draws_its_object_thick(det_run: SyntheticRun) -> None:
    html = render(det_run)
    cards = _cards(html, "hard", "hard_positive")
    first = cards[0]  # c0's hardest: missed, object 0 of image 0 at [8, 8, 24, 24]
    assert 'data-object="0"' in first and "object 0 · missed" in first
    thumb = _thumb(first)
    assert thumb[20, 11].tolist() == list(RIM_RGB)
    assert thumb[20, 13].tolist() == PALETTE[0].tolist()


def test_hard_negative_card_says_where_the_false_alarm_fired(det_run: SyntheticRun) -> None:
    cards = _cards(render(det_run), "hard", "hard_negative")
    assert "false alarm on background · score 0.9" in cards[0]
    assert "false alarm on an object of another class" in cards[1]


# ---------------------------------------------------------------- the rest of the page


def test_integrity_card_highlights_the_checked_object(det_run: SyntheticRun) -> None:
    card = _card_of(render(det_run), "integrity", "data-issue", sample="s00001")
    assert "<b>box_clipped</b>" in card and "(object 3)" in card
    thumb = _thumb(card)  # object 3: image 1's object 0, c0, at [8, 8, 24, 24]
    assert thumb[20, 11].tolist() == list(RIM_RGB)
    assert thumb[20, 13].tolist() == PALETTE[0].tolist()


def test_integrity_cards_filter_by_the_classes_of_their_objects(det_run: SyntheticRun) -> None:
    card = _card_of(render(det_run), "integrity", "data-issue", sample="s00001")
    classes = re.search(r'data-classes="([^"]*)"', card)
    assert classes is not None and json.loads(classes.group(1).replace("&quot;", '"')) == [
        "c0", "c1", "c2"
    ]  # fmt: skip


def test_overview_counts_objects_per_class_and_split(det_run: SyntheticRun) -> None:
    part = _section(render(det_run), "overview")
    rows = _rows(part, "<h3>Objects per class and split</h3>")
    # 40 images (16 train, 16 val, 8 test), one object of each class per image
    assert rows == [[c, "16", "16", "8", "40", "40"] for c in det_run.classes]
    sizes = re.search(r"<h4>box size \(COCO area ranges\)</h4>(.*?)</div></div>", part)
    assert sizes is not None
    assert re.findall(r'class="bar-n">(\d+)<', sizes.group(1)) == ["120", "0", "0"]


def test_curation_counts_object_actions_per_class(det_run: SyntheticRun) -> None:
    rows = _rows(_section(render(det_run), "curation"), "<h3>Object actions per class</h3>")
    assert rows == [[c, "40", "40"] for c in det_run.classes]


def test_without_objects_parquet_the_cards_stay_and_thumbnails_are_plain(
    det_run: SyntheticRun,
) -> None:
    det_run.files.objects.unlink()
    det_run.files.curated_objects.unlink()
    html = render(det_run)
    cards = _cards(html, "label-issues", "label-issue")
    assert len(cards) == det_run.label_issues
    thumb = _thumb(_card_of(html, "label-issues", "label-issue", object="27"))
    assert thumb[20, 12].tolist() == GREY  # no given boxes to draw
    assert "not available: object curation" in html


def test_the_stage_draws_boxes(tmp_path: Path, det_run: SyntheticRun) -> None:
    params = tmp_path / "params.yaml"
    datasets = {det_run.name: {"root": str(det_run.root), "task": det_run.task}}
    params.write_text(yaml.safe_dump({"datasets": datasets}))
    argv = ["--dataset", det_run.name, "--params", str(params),
            "--runs", str(det_run.run.parent)]  # fmt: skip
    assert report_stage.main(argv) == 0
    html = (det_run.run / "reports" / "report.html").read_text()
    thumb = _thumb(_card_of(html, "label-issues", "label-issue", object="27"))
    assert thumb[20, 12].tolist() == PALETTE[0].tolist()


def test_detection_report_of_2k_images_stays_under_20_mb(tmp_path: Path) -> None:
    # 2k textured 128 px images, 6k objects; 400 label issues, 100 hard examples per class
    # and role, 100 flagged samples, 20 duplicate groups
    run = make_run(
        tmp_path, task="detection", n=2000, n_classes=3, flagged=100, label_issues=400,
        hard_per_class=100, groups=20, pool=400, size=128,
    )  # fmt: skip
    html = render(run)
    page = Page(html)
    assert page.count("issue-card", "label-issue") == 200
    assert page.count("issue-card", "data-issue") == 100
    assert page.count("gallery-card") == 2 * 3 * 12  # gallery_per_class per class and role
    size_mb = len(html.encode()) / 1e6
    print(f"2k-image detection report: {size_mb:.2f} MB")
    assert size_mb < 20
