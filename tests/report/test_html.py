"""The report page: card counts and caps, self-containment, missing inputs, segmentation
views, and a 10k-sample size check."""

from __future__ import annotations

import json
import re
from collections import Counter
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datapipe.config import ReportParams
from datapipe.report.sections import _fair_cap
from datapipe.report.thumbnails import ZOOM_BUDGET
from tests.report.conftest import Page, SyntheticRun, decode_uri, make_run, render


@pytest.mark.parametrize(
    ("max_cards", "data_cards", "label_cards"),
    [(200, 6, 5), (4, 4, 4), (1, 2, 1)],
    ids=["under-cap", "capped-at-4", "capped-at-1-still-every-check"],
)
def test_issue_cards_equal_flagged_samples_up_to_the_cap(
    cls_run: SyntheticRun, max_cards: int, data_cards: int, label_cards: int
) -> None:
    # 6 flagged samples (the first with two checks: still one card), 5 label issues; at a cap
    # of 1 the integrity section still shows each of its 3 checks: s00000 (blank and dark) and
    # one near-duplicate
    page = Page(render(cls_run, ReportParams(max_cards=max_cards)))
    assert page.count("issue-card", "data-issue") == data_cards
    assert page.count("issue-card", "label-issue") == label_cards
    assert page.count("issue-card") == data_cards + label_cards


def test_one_card_lists_every_check_of_its_sample(cls_run: SyntheticRun) -> None:
    html = render(cls_run)
    pattern = r'<div class="card issue-card data-issue[^"]*" data-sample="s00000"[^>]*>.*?</ul>'
    card = re.search(pattern, html)
    assert card is not None
    assert "sev-error" in card.group(0)  # its worst check decides the colour
    assert "<b>blank</b>" in card.group(0) and "<b>dark</b>" in card.group(0)


def test_duplicate_groups_show_members_side_by_side(cls_run: SyntheticRun) -> None:
    page = Page(render(cls_run))
    assert page.count("dup-group") == cls_run.groups
    assert page.count("dup-member") == 2 * cls_run.groups


def test_galleries_show_hard_examples_per_class_and_role(cls_run: SyntheticRun) -> None:
    page = Page(render(cls_run, ReportParams(gallery_per_class=3)))
    per_class = min(3, cls_run.hard_per_class)  # easy rows are not shown
    assert page.count("gallery-card", "positive") == per_class * len(cls_run.classes)
    assert page.count("gallery-card", "negative") == per_class * len(cls_run.classes)


def test_gallery_total_stays_within_max_cards(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=60, n_classes=6, hard_per_class=5)
    page = Page(render(run, ReportParams(max_cards=12, gallery_per_class=5)))
    # 12 cards over 6 classes x 2 roles: one each
    assert page.count("gallery-card") == 12


def test_label_quality_histogram_counts_every_scored_sample(cls_run: SyntheticRun) -> None:
    html = render(cls_run)
    hist = re.search(r"<h4>label quality of all scored samples</h4>(.*?)</div></div>", html)
    assert hist is not None
    counts = [int(c) for c in re.findall(r'class="bar-n">(\d+)<', hist.group(0))]
    assert len(counts) == 10
    assert counts[0] == cls_run.flagged + cls_run.label_issues and counts[9] == 29
    assert sum(counts) == 40


def test_images_are_data_uris_and_no_url_leaves_the_page(cls_run: SyntheticRun) -> None:
    html = render(cls_run)
    page = Page(html)
    assert len(page.imgs) > 10
    assert all(src.startswith("data:image/") for src in page.imgs)
    assert all(url.startswith(("data:", "#")) for url in page.urls)
    assert not re.search(r"(https?:|ftp:|file:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I)
    assert "url(" not in html  # no CSS fetches either
    assert "default-src 'none'" in html  # and the page forbids them


def test_missing_optional_inputs_leave_notes_not_errors(cls_run: SyntheticRun) -> None:
    files = cls_run.files
    for path in (files.data_issues, files.scores, files.label_issues, files.hard_examples,
                 files.curated, files.curation_summary):  # fmt: skip
        path.unlink(missing_ok=True)
    for path in files.metrics.glob("*.json"):
        path.unlink()
    html = render(cls_run)
    page = Page(html)
    assert page.count("issue-card") == 0
    notes = re.findall(r"not available: ([a-z ]+) \(<code>([^<]+)</code> not found\)", html)
    named = {what for what, _ in notes}
    assert named == {
        "data issues", "label issues", "hard examples", "curation metrics", "curation summary",
        "training curves", "evaluation metrics", "augmentation preview",
    }  # fmt: skip
    assert any(path.endswith("metrics/eval.json") for _, path in notes)


def test_eval_metrics_curves_and_confusion_are_shown_when_present(cls_run: SyntheticRun) -> None:
    run = cls_run.run
    (run / "metrics" / "eval.json").write_text(
        '{"accuracy": 0.875, "macro_f1": 0.5, "recall": {"c0": 1.0, "c1": 0.25, "c2": NaN}}'
    )
    (run / "plots").mkdir(exist_ok=True)
    (run / "plots" / "eval_confusion.csv").write_text("actual,predicted\nc0,c0\nc0,c1\nc1,c1\n")
    for split in ("train", "val"):
        curve = run / "dvclive" / "plots" / "metrics" / split / "loss.tsv"
        curve.parent.mkdir(parents=True)
        curve.write_text("step\tloss\n0\t2.0\n1\t1.0\n2\t0.5\n")
    html = render(cls_run)
    assert "evaluation metrics" not in html  # no 'not available' note
    assert re.search(r"<td>accuracy</td><td class=\"num\">0.875</td>", html)
    assert html.count("<polyline") == 2  # train and val share the 'loss' chart
    assert 'title="1 rows">0.50</td>' in html  # c0 row: half right, half c1


def test_segmentation_label_issue_shows_mask_overlay_and_issue_map(seg_run: SyntheticRun) -> None:
    html = render(seg_run)
    card = re.search(r'<div class="card issue-card label-issue wide".*?</div></div>', html)
    assert card is not None
    overlay_uri, issue_uri = re.findall(r'src="(data:[^"]+)"', card.group(0))
    overlay, issues = decode_uri(overlay_uri), decode_uri(issue_uri)
    # the issue map's top-left quarter is painted red; the overlay is not
    top_left = issues[10:40, 10:40].reshape(-1, 3).mean(0)
    assert top_left[0] > 150 and top_left[1] < 80
    assert not np.array_equal(overlay, issues)


def test_unreadable_image_gets_a_placeholder(cls_run: SyntheticRun) -> None:
    (cls_run.root / "img" / "00000.png").write_bytes(b"")
    page = Page(render(cls_run))
    assert page.count("thumb", "missing") >= 1
    assert page.count("issue-card", "data-issue") == cls_run.flagged


def test_report_of_10k_samples_stays_under_20_mb(tmp_path: Path) -> None:
    # 10k samples, 10 classes; 5% flagged, 10% label issues, 100 hard examples per class
    # and role, 100 duplicate groups; images cycle through 800 distinct 128 px textures
    run = make_run(
        tmp_path, n=10_000, n_classes=10, flagged=500, label_issues=1000, hard_per_class=100,
        groups=100, pool=800, size=128,
    )  # fmt: skip
    html = render(run)
    size_mb = len(html.encode()) / 1e6
    page = Page(html)
    assert page.count("issue-card", "data-issue") == 200
    assert page.count("issue-card", "label-issue") == 200
    assert page.count("gallery-card") == 200
    print(f"10k-sample report: {size_mb:.2f} MB")
    assert size_mb < 20


def _flood(run: SyntheticRun, counts: dict[str, tuple[int, str]]) -> None:
    """Replace the run's data issues: per check, (samples, severity), over distinct samples."""
    rows, i = [], 0
    for check, (n, severity) in counts.items():
        for _ in range(n):
            rows.append((f"s{i:05d}", f"img/{i % 40:05d}.png", check, severity, 0.3, "x", None))
            i += 1
    pd.DataFrame(
        rows, columns=["sample_id", "image", "check", "severity", "score", "detail", "group"]
    ).to_csv(run.files.data_issues, index=False)


def _card_checks(html: str, section: str) -> list[list[str]]:
    part = html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    found = re.findall(r'class="card issue-card[^"]*"[^>]*data-checks="([^"]*)"', part)
    return [json.loads(unescape(f)) for f in found]


def test_a_flood_of_one_check_cannot_hide_the_rare_ones(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=400, flagged=1, label_issues=1)
    _flood(run, {"near_duplicate": (300, "warning"), "split_leakage": (60, "warning"),
                 "odd_size": (3, "warning"), "blank": (2, "error")})  # fmt: skip
    checks = _card_checks(render(run, ReportParams(max_cards=20)), "integrity")
    assert len(checks) == 20
    assert [c[0] for c in checks[:5]] == ["blank"] * 2 + ["odd_size"] * 3  # severity, rarity
    shown = Counter(c[0] for c in checks)
    # every check at least once; the floods get 7 each (cap), the one card left the rarer
    assert shown == {"blank": 2, "odd_size": 3, "split_leakage": 8, "near_duplicate": 7}


@pytest.mark.parametrize(
    ("counts", "limit", "cap"),
    [([3, 10, 800], 200, 187), ([5, 5], 4, 2), ([5, 5], 3, 1), ([1, 1, 1], 10, 1), ([50], 20, 20)],
    ids=["flood", "even", "tight", "all-fit", "one-check"],
)
def test_fair_cap_is_the_largest_that_fits(counts: list[int], limit: int, cap: int) -> None:
    assert _fair_cap(np.array(counts), limit) == cap


def test_integrity_summary_counts_samples_and_cards_shown_per_check(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=400, flagged=1, label_issues=1)
    _flood(run, {"near_duplicate": (300, "warning"), "odd_size": (3, "warning")})
    html = render(run, ReportParams(max_cards=10))
    summary = re.search(r"<table[^>]*><thead><tr><th>check</th>.*?</table>", html)
    assert summary is not None
    rows = re.findall(r"<tr><td>(\w+)</td><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td><td[^>]*>(\d+)",
                      summary.group(0))  # fmt: skip
    assert rows == [("odd_size", "3", "3", "3"), ("near_duplicate", "300", "300", "7")]
    assert "every check at least once and up to 7 per check" in html


def test_large_duplicate_groups_show_a_few_members_and_a_count(tmp_path: Path) -> None:
    run = make_run(tmp_path, n=40, flagged=12, label_issues=1, groups=1)
    issues = pd.read_csv(run.files.data_issues)
    issues.loc[issues["check"] == "dark", "group"] = 7  # one group of all 12
    issues.loc[issues["check"] == "dark", "check"] = "near_duplicate"
    issues.to_csv(run.files.data_issues, index=False)
    html = render(run)
    page = Page(html)
    group = re.search(r'<div class="dup-group" data-group="7".*?</ul></details>', html)
    assert group is not None
    assert page.count("dup-member") == 4 + 2  # 4 of group 7, both of the 2-member group 0
    assert "group 7: 12 images" in group.group(0) and "+8 more</summary>" in group.group(0)
    assert group.group(0).count("<li>") == 8  # the rest are named


def test_cards_show_file_names(cls_run: SyntheticRun) -> None:
    html = render(cls_run)
    assert (
        '<div class="path" title="img/00000.png"><span class="folder">img/</span>'
        "<b>00000.png</b></div>" in html
    )
    hard = re.findall(r'<div class="card gallery-card.*?</div></div>', html)
    assert hard and all('<div class="path"' in card for card in hard)


def _confusion_rows(run: SyntheticRun, rows: list[tuple[str, str, int]]) -> None:
    (run.run / "plots").mkdir(exist_ok=True)
    pd.DataFrame(
        [(a, p) for a, p, n in rows for _ in range(n)], columns=["actual", "predicted"]
    ).to_csv(run.files.oof_confusion, index=False)


def test_most_confused_pairs_table(cls_run: SyntheticRun) -> None:
    _confusion_rows(cls_run, [("c0", "c0", 10), ("c0", "c2", 4), ("c1", "c0", 1),
                              ("c2", "c2", 5), ("c1", "c1", 9)])  # fmt: skip
    html = render(cls_run)
    pairs = re.search(r"Most confused class pairs.*?</table>", html)
    assert pairs is not None
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td><td[^>]*>([\d.]+)</td>"
                      r"<td[^>]*>([\d.]+)</td></tr>", pairs.group(0))  # fmt: skip
    assert rows == [("c0", "c2", "4", "28.6"), ("c1", "c0", "1", "10")]


def test_segmentation_breakdown_names_the_class_the_model_suggests(seg_run: SyntheticRun) -> None:
    # c1: 20 pixels, 5 called c2; c2: 10, none missed; background: 70, 2 called c1
    _confusion_rows(seg_run, [("c0", "c0", 68), ("c0", "c1", 2), ("c1", "c1", 15),
                              ("c1", "c2", 5), ("c2", "c2", 10)])  # fmt: skip
    html = render(seg_run)
    part = re.search(r"Pixels the model labels otherwise, per class.*?</table>", html)
    assert part is not None
    cells = re.findall(r"<tr>(.*?)</tr>", part.group(0))[1:]
    values = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in cells]
    assert [v[:6] for v in values] == [
        ["c0", "70", "2.9", "c1", "0", ""],
        ["c1", "20", "25", "c2", "11.8", "c0"],
        ["c2", "10", "0", "", "33.3", "c1"],
    ]
    # hard_examples.csv has 4 hard positives and 4 hard negatives per class
    assert all(v[6:] == ["4", "4"] for v in values)


def test_label_issue_cards_embed_a_larger_picture(tmp_path: Path) -> None:
    run = make_run(tmp_path, task="segmentation", n=20, flagged=2, label_issues=3, size=200)
    html = render(run)
    cards = re.findall(r'<div class="card issue-card label-issue wide".*?</div></div>', html)
    assert len(cards) == 3
    zooms = [re.findall(r'data-zoom="(data:[^"]+)"', card) for card in cards]
    assert all(len(z) == 2 for z in zooms)  # the given mask and the issue map
    big = decode_uri(zooms[0][1])
    assert big.shape == (200, 200, 3)  # never enlarged past the image (ZOOM_SIZE 384)
    top_left = big[20:80, 20:80].reshape(-1, 3).mean(0)  # the issue quarter, painted red
    assert top_left[0] > 150 and top_left[1] < 80


def test_segmentation_report_with_large_images_keeps_the_zoom_budget(tmp_path: Path) -> None:
    run = make_run(
        tmp_path, task="segmentation", n=2000, flagged=100, label_issues=400, groups=20,
        hard_per_class=50, pool=400, size=384,
    )  # fmt: skip
    html = render(run)
    zooms = re.findall(r'data-zoom="(data:[^"]+)"', html)
    assert 0 < len(zooms) < 2 * 200  # the budget ran out before every card got one
    assert sum(map(len, zooms)) <= ZOOM_BUDGET + max(map(len, zooms))
    size_mb = len(html.encode()) / 1e6
    print(f"2k-sample segmentation report, 384 px: {size_mb:.2f} MB, {len(zooms)} zooms")
    assert size_mb < 20
