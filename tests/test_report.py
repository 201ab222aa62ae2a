import pandas as pd
import pytest

from benchmark.report import render, summarise
from benchmark.results import read_rows, write_rows


def _rows():
    rows = []
    for method, fg, err in (("a", (0.40, 0.50), (0.10, 0.12)), ("b", (0.30, 0.30), (0.05, 0.07))):
        for seed, (value, e) in enumerate(zip(fg, err)):
            common = {"method": method, "dataset": "synthetic", "split": "test", "protocol": "corrected",
                      "masks": "gt", "num_parts": 4, "seed": seed, "n": 100, "method_params": '{"num_parts": 4}'}
            rows.append({**common, "metric": "fg_nmi", "value": value})
            rows.append({**common, "metric": "landmark_error", "value": e})
    return rows


def test_summary_is_mean_and_sample_std_times_100():
    summary = summarise(pd.DataFrame(_rows()))
    a = summary[(summary.label == "a") & (summary.metric == "fg_nmi")].iloc[0]
    assert a["mean"] == pytest.approx(45.0) and a["std"] == pytest.approx(7.0710678, rel=1e-6) and a["seeds"] == 2


def test_markdown_bolds_best_per_column_lower_is_better_for_errors():
    text = render(pd.DataFrame(_rows()), "markdown")
    assert "**45.00 ± 7.07**" in text  # highest fg_nmi
    assert "**6.00 ± 1.41**" in text  # lowest landmark error
    assert "30.00 ± 0.00" in text and "**30.00" not in text


def test_latex_is_booktabs_with_real_bold_and_pm():
    text = render(pd.DataFrame(_rows()), "latex")
    assert "\\toprule" in text and "\\textbf{45.00 $\\pm$ 7.07}" in text and "BOLD" not in text


def test_methods_with_several_parameter_sets_get_distinct_labels():
    rows = _rows()
    for row in rows[:2]:
        row["method_params"] = '{"num_parts": 4, "niter": 5}'
    labels = set(summarise(pd.DataFrame(rows))["label"])
    assert "a (niter=5)" in labels and "a (niter=None)" in labels


def test_result_rows_round_trip(tmp_path):
    path = tmp_path / "r.csv"
    write_rows(path, _rows())
    back = read_rows(path)
    assert back[0]["value"] == 0.40 and back[0]["seed"] == 0 and back[0]["num_parts"] == 4


def test_paper_numbers_join_legacy_tables_only():
    rows = []
    for protocol in ("legacy", "corrected"):
        for metric, value in (("fg_nmi", 0.46), ("fg_ari", 0.21)):
            rows.append({"method": "ours", "dataset": "cub", "split": "test", "protocol": protocol, "masks": "gt",
                         "num_parts": 4, "seed": 0, "n": 10, "metric": metric, "value": value,
                         "method_params": "{}"})
    text = render(pd.DataFrame(rows), "markdown", with_paper=True)
    sections = {s.split("protocol=")[1].split(",")[0]: s for s in text.split("### ")[1:]}
    legacy, corrected = sections["legacy"], sections["corrected"]
    assert "ours (paper, 5 seeds) | fg-masks      | 45.30 ± 2.80" in legacy
    assert "ours (paper)          | fg-masks      | 46.00" in legacy
    assert "ours (paper)" not in corrected
    assert "**42.80" not in legacy  # published numbers never take the bold


def test_runs_with_different_dataset_options_are_separate_tables():
    # Two PASCAL-Part categories must never be averaged as if they were seeds of one setting.
    rows = []
    for category, value in (("car", 0.40), ("horse", 0.20)):
        rows.append({"method": "dff", "dataset": "pascal-part", "split": "test", "protocol": "corrected",
                     "masks": "gt", "num_parts": 8, "seed": 0, "n": 10, "metric": "fg_nmi", "value": value,
                     "method_params": "{}", "dataset_options": f'{{"category": "{category}", "size": 64}}'})
    summary = summarise(pd.DataFrame(rows))
    assert sorted(summary["mean"].round(6)) == [20.0, 40.0] and set(summary["seeds"]) == {1}
    text = render(pd.DataFrame(rows), "markdown")
    assert "category=car" in text and "category=horse" in text and "size=" not in text


def test_published_numbers_come_from_the_data_file():
    from benchmark.published import PublishedResult, published_results

    sweep = published_results(method="ours", dataset="cub", label="paper")
    assert {(r.num_parts, r.metric): r.mean_x100 for r in sweep}[(8, "fg_nmi")] == 58.2
    assert len(sweep) == 12 and all(r.protocol == "legacy" and r.seeds == 1 for r in sweep)
    five = published_results(dataset="deepfashion", num_parts=4, metric="nmi", label="paper, 5 seeds")
    assert [(r.mean_x100, r.std_x100, r.seeds) for r in five] == [(68.2, 0.2, 5)]
    assert published_results(dataset="cub", num_parts=4, metric="fg_ari", label="notebook")[0].mean_x100 == 21.03
    assert published_results(protocol="corrected") == []
    assert all(isinstance(r, PublishedResult) and r.source for r in published_results())


def test_a_published_row_of_any_method_joins_its_setting(monkeypatch):
    import math

    import benchmark.published as published

    extra = published.PublishedResult("dff", "pascal-part", 8, "fg_nmi", "corrected", 12.5, math.nan, 1,
                                      "their paper", "a test row")
    monkeypatch.setattr(published, "_all", lambda: (extra,))
    rows = [{"method": "dff", "dataset": "pascal-part", "split": "test", "protocol": "corrected", "masks": "gt",
             "num_parts": 8, "seed": 0, "n": 10, "metric": "fg_nmi", "value": 0.1, "method_params": "{}"}]
    text = render(pd.DataFrame(rows), "markdown", with_paper=True)
    line = next(l for l in text.splitlines() if "dff (their paper)" in l)
    assert "12.50" in line and "**" not in line  # shown, never bold


def test_user_text_is_escaped_in_latex_captions_and_markdown():
    """A mask folder or parameter with LaTeX specials or HTML (user text) neither breaks the LaTeX nor puts
    raw HTML into the Markdown (issue 23)."""
    rows = _rows()
    for row in rows:
        row["masks"] = "predicted:/data/a&b_100%#{x}~^\\"
        if row["method"] == "a":  # a hand-edited or plug-in result file: the name is user text too
            row["method"] = "<script>alert(1)</script>"
    latex = render(pd.DataFrame(rows), "latex")
    caption = next(line for line in latex.splitlines() if line.startswith("\\caption"))
    assert r"a\&b\_100\%\#\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{}" in caption, caption
    markdown = render(pd.DataFrame(rows), "markdown")
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown


def test_reproduce_tables_escape_plan_titles():
    from benchmark.reproduce.tables import render_latex, render_markdown

    table = {"title": "K & 100% <b>bold</b> #1", "header": ["Method", "seeds"], "rows": [["<i>x</i> | y", "1"]],
             "has_paper": False}
    latex = render_latex([table])
    assert r"\caption{K \& 100\% <b>bold</b> \#1." in latex
    markdown = render_markdown([table])
    assert "<b>" not in markdown and "<i>" not in markdown and r"\| y" in markdown
