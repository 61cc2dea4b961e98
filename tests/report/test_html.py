"""The report page: card counts and caps, self-containment, missing inputs, segmentation
views, and a 10k-sample size check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from datapipe.config import ReportParams
from tests.report.conftest import Page, SyntheticRun, decode_uri, make_run, render


@pytest.mark.parametrize(
    ("max_cards", "data_cards", "label_cards"),
    [(200, 6, 5), (4, 4, 4), (1, 1, 1)],
    ids=["under-cap", "capped-at-4", "capped-at-1"],
)
def test_issue_cards_equal_flagged_samples_up_to_the_cap(
    cls_run: SyntheticRun, max_cards: int, data_cards: int, label_cards: int
) -> None:
    # 6 flagged samples (the first with two checks: still one card), 5 label issues
    page = Page(render(cls_run, ReportParams(max_cards=max_cards)))
    assert page.count("issue-card", "data-issue") == data_cards
    assert page.count("issue-card", "label-issue") == label_cards
    assert page.count("issue-card") == data_cards + label_cards


def test_one_card_lists_every_check_of_its_sample(cls_run: SyntheticRun) -> None:
    html = render(cls_run)
    card = re.search(r'<div class="card issue-card data-issue[^"]*" data-sample="s00000">.*?</ul>',
                     html)  # fmt: skip
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
