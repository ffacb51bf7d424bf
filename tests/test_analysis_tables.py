"""Table builders on a fixture of run summaries with missing cells and diverged runs; reproducible output."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from analysis_fixture import write_results
from PIL import Image

from analysis.__main__ import main as analysis_main
from analysis.render import latex_escape as _escape


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's results folder, analysed once for the module (the tests only read it, or regenerate it)."""
    root = write_results(tmp_path_factory.mktemp("analysed"))
    assert analysis_main(["--config", str(root / "config.yaml"), "--results", str(root / "results")]) == 0
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_every_table_is_written_and_indexed(results: Path) -> None:
    tables = results / "results" / "tables"
    index = pd.read_csv(tables / "index.csv")
    assert set(index["paper_table"]) >= {"1", "2", "3/5", "4/6", "7", "8", "9", "10", "11", "14", "15", "16"}
    for files in index["files"]:
        for name in files.split():
            assert (tables / name).is_file()
            text = (tables / name).read_text()
            assert not re.search(r"\bnan\b", text.lower()), name  # a NaN printed as a number ("determinant" is fine)
    runs = pd.read_csv(results / "results" / "runs.csv")
    assert set(runs["status"]) == {"ok", "diverged", "missing"}
    ablation = (tables / "T7_ablation_synth.md").read_text()
    row = next(line for line in ablation.splitlines() if line.startswith("| w/o DIA"))
    assert row.count("--") >= 4  # never ran: missing, not zero
    tal = pd.read_csv(tables / "T7_ablation_synth.csv").set_index("variant")
    assert (
        tal.loc["w/o TAL", "I-AUROC n"] == 2 and tal.loc["w/o TAL", "I-AUROC planned"] == 3
    )  # the diverged seed is left out
    row = next(line for line in ablation.splitlines() if line.startswith("| w/o TAL"))
    assert row.count("(n=2 of 3)") == 4 and "**" not in row  # marked in print, and never bold
    depth = (tables / "T9_depth_synth.md").read_text()
    assert "| M16 N2 | diverged (n=0 of 3) | diverged (n=0 of 3) |" in depth
    interaction = pd.read_csv(tables / "T8_interaction_synth.csv").set_index("component / response")
    # the fixture's whitening effect exists only with a frozen base (-0.1 there, 0 in the trainable arm): an interaction
    # (the three seeds are blocks: each effect against its own variance over them, df = 3 - 1)
    assert (
        interaction.loc["WA / P-AP", "verdict"] == "Integral" and interaction.loc["WA / P-AP", "p inter. mean"] < 0.05
    )
    wa = interaction.loc["WA / P-AP"]  # the simple effects: +0.1 with a frozen base, none with a trainable one
    assert abs(wa["Δ comp. frozen mean"] - 0.1) < 0.05 and abs(wa["Δ comp. trainable mean"]) < 0.05
    low, high = (float(v) for v in wa["95% CI frozen"].strip("[]").split(", "))
    assert low < wa["Δ comp. frozen mean"] < high and low > 0 and wa["df mean"] == 2 and wa["n mean"] == 3
    # the second response, each task right after its own training: the fixture's effect is in every cell, so there too
    just = interaction.loc["WA / P-AP just trained"]
    assert just["verdict"] == "Integral" and abs(just["Δ comp. frozen mean"] - 0.1) < 0.05
    dilemma = pd.read_csv(tables / "T1_dilemma_synth.csv").set_index("variant")
    assert dilemma.loc["MoLE-Flow", "zero FM"] == "yes" and dilemma.loc["Sequential", "zero FM"] == "no"
    # the fixture's two forgetting kinds differ (Chaudhry's FM 0.2, the paper's 0.1): each column reads its own
    assert dilemma.loc["Sequential", "FM I-AUROC mean"] == pytest.approx(0.2)
    assert dilemma.loc["Sequential", "FM I-AUROC (paper) mean"] == pytest.approx(0.1)
    per_category_fm = pd.read_csv(tables / "T3_image_auroc_synth.csv").set_index("method")
    assert per_category_fm.loc["kNN (this harness)", "FM (paper) mean"] == pytest.approx(0.1)  # not Chaudhry's 0.2
    config = pd.read_csv(tables / "T2_configuration.csv").set_index("parameter")
    assert config.loc["Backbone", "synth"] == "tf_efficientnet_lite0" and str(config.loc["LoRA rank", "synth"]) == "16"
    summary = pd.read_csv(tables / "T10_sensitivity_synth.csv").set_index("hyper-parameter")
    assert (
        summary.loc["tail_weight", "values"] == "0.3, 0.7*, 1.0" and summary.loc["tail_weight", "best (P-AP)"] == "1.0"
    )
    assert summary.loc["lora_rank", "values"] == "4, 16*"  # the default's value is read from its config
    sweep = pd.read_csv(tables / "T11_sweep_tail_weight_synth.csv").set_index("tail_weight")
    assert np.isnan(sweep.loc["0.7 (default)", "Δ P-AP mean"]) and sweep.loc["0.3", "P-AP n"] == 3
    # Δ by hand: per seed, the run's mean P-AP over categories, minus the default's; mean and t interval over seeds
    from scipy import stats as sps

    sens = runs[(runs["study"] == "sensitivity") & (runs["status"] == "ok")]
    per_seed = sens.groupby(["variant", "seed"])["pixel_ap_routed"].mean()
    diff = (per_seed["tail_weight 0.3"] - per_seed["default"]).to_numpy()
    half = sps.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    got = sweep.loc["0.3"]
    assert got["Δ P-AP n"] == 3 and got["Δ P-AP mean"] == pytest.approx(diff.mean(), abs=1e-9)
    assert (got["Δ P-AP low"], got["Δ P-AP high"]) == pytest.approx((diff.mean() - half, diff.mean() + half), abs=1e-9)
    # not generated: the paper's rows for MVTec AD, only for its categories (tile), cited as reported
    per_category = pd.read_csv(tables / "T3_image_auroc_synth.csv").set_index("method")
    assert per_category.loc["MoLE-Flow (reported)", "tile mean"] == 1.0
    assert np.isnan(per_category.loc["MoLE-Flow (reported)", "cap mean"])
    assert np.isnan(per_category.loc["CADIC (reported)", "mean mean"])  # cap is not reported: no mean
    assert per_category.loc["MoLE-Flow (this harness)", "tile n"] == 3
    # the main study's reference row is an own-run row of its own, never pooled with MoLE-Flow's
    assert per_category.loc["kNN (this harness)", "tile n"] == 3
    assert (
        per_category.loc["kNN (this harness)", "tile mean"]
        < 0.7
        < per_category.loc["MoLE-Flow (this harness)", "tile mean"]
    )
    forgetting = pd.read_csv(tables / "T15_forgetting_synth.csv").set_index("task")
    assert forgetting.loc["run", "FM I-AUROC mean"] == 0 and forgetting.loc["run", "FM I-AUROC n"] == 3
    # per task, by hand from the main study's MoLE-Flow summaries: the mean over seeds of its final routed value
    import json

    from moleflow.planning import plan_runs

    workflow = yaml.safe_load((results / "config.yaml").read_text())
    mole = [r for r in plan_runs(workflow).values() if ("main", "MoLE-Flow") in r.memberships]
    finals = [json.loads((results / "results" / "runs" / r.run_id / "summary.json").read_text())["final"] for r in mole]
    for category in ("cap", "tile"):
        by_hand = np.mean([f[category]["routed"]["image_auroc"] for f in finals])
        assert forgetting.loc[category, "I-AUROC mean"] == pytest.approx(by_hand, abs=1e-12), category
    summary16 = pd.read_csv(tables / "T16_summary.csv").set_index("dataset")
    assert summary16.loc["synth", "I-AUROC n"] == 3 and summary16.loc["synth", "I-AUROC mean"] > 0.8
    # categories as a random effect: the same mean, an interval wider than the seeds' spread
    mixed = pd.read_csv(tables / "T16b_category_model.csv").set_index("dataset metric").loc["synth I-AUROC"]
    assert mixed["mean mean"] == pytest.approx(summary16.loc["synth", "I-AUROC mean"], abs=1e-9)
    assert mixed["categories mean"] == 2 and mixed["seeds mean"] == 3
    assert (mixed["SD categories mean"] > 0) != ("boundary" in str(mixed["note"]))
    low, high = (float(x) for x in mixed["mean's 95% CI"].strip("[]").split(","))
    assert high - low > 2 * summary16.loc["synth", "I-AUROC std"]
    new_low, new_high = (float(x) for x in mixed["new category's 95% PI"].strip("[]").split(","))
    assert 0 < new_low < new_high < 1  # the logit scale keeps a new category's interval inside (0, 1)
    latex = (tables / "T7_ablation_synth.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "{\\boldmath$" in latex and "\\textbf{$" not in latex


@pytest.mark.slow
def test_figures_are_drawn_and_indexed(results: Path) -> None:
    figures = results / "results" / "figures"
    index = pd.read_csv(figures / "index.csv").set_index("id")
    assert set(index.index) == {
        f"{name}_synth"
        for name in ("accuracy_matrix", "sensitivity", "per_category", "routing_confusion", "forgetting_over_tasks")
    } | {"claims_effects"}
    for files in index["files"]:
        for name in files.split():
            assert (figures / name).stat().st_size > 2000, name
            if name.endswith(".png"):  # a picture with something drawn on it, not a blank canvas
                pixels = np.asarray(Image.open(figures / name).convert("L"), dtype=float)
                assert min(pixels.shape) >= 200 and pixels.std() > 5, name
    assert (figures / "accuracy_matrix_synth.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_regenerating_gives_identical_files(results: Path) -> None:
    args = ["--config", str(results / "config.yaml"), "--results", str(results / "results")]
    first = {**_digest(results / "results" / "tables"), **_digest(results / "results" / "figures")}
    assert analysis_main(args) == 0  # over the module's analysis: every file written again, byte for byte
    assert {**_digest(results / "results" / "tables"), **_digest(results / "results" / "figures")} == first
    # and it recomputes from the runs: one run's number changed moves its table's cell, and only by that change
    import json

    from moleflow.planning import plan_runs

    workflow = yaml.safe_load((results / "config.yaml").read_text())
    run = next(r for r in plan_runs(workflow).values() if ("ablation", "w/o TAL") in r.memberships and r.seed == 0)
    path = results / "results" / "runs" / run.run_id / "summary.json"
    original = path.read_text()
    summary = json.loads(original)
    for category in summary["final"]:
        summary["final"][category]["routed"]["pixel_ap"] += 0.03
    before = pd.read_csv(results / "results" / "tables" / "T7_ablation_synth.csv").set_index("variant")
    try:
        path.write_text(json.dumps(summary))
        assert analysis_main(args) == 0
        after = pd.read_csv(results / "results" / "tables" / "T7_ablation_synth.csv").set_index("variant")
        n = after.loc["w/o TAL", "P-AP n"]
        assert after.loc["w/o TAL", "P-AP mean"] == pytest.approx(
            before.loc["w/o TAL", "P-AP mean"] + 0.03 / n, abs=1e-9
        )
        assert after.loc["MoLE-Flow", "P-AP mean"] == before.loc["MoLE-Flow", "P-AP mean"]
    finally:
        path.write_text(original)
    assert analysis_main(args) == 0
    assert {**_digest(results / "results" / "tables"), **_digest(results / "results" / "figures")} == first


def _flat(cell: str) -> str:
    """A LaTeX cell on one line: a stacked cell's lines joined, bold written ``\textbf{...}``, the small line plain."""
    cell = re.sub(r"\\begin\{tabular\}\[[cb]\]\{@\{\}c@\{\}\}(.*)\\end\{tabular\}", r"\1", cell)
    cell = cell.replace(r"\\[-2pt]", " ").replace("\\\\", " ").replace("\\allowbreak{}", "")  # a break is no content
    cell = re.sub(r"\{\\scriptsize (.*)\}$", r"\1", cell)
    if "{\\boldmath" in cell:
        cell = "\\textbf{" + re.sub(r"\{\\boldmath(\$[^$]*\$)\}", r"\1", cell) + "}"
    return cell.replace("$ $", " ").strip()


def _latex_rows(part: str) -> list[list[str]]:
    return [[c.strip() for c in row.split(" & ")] for row in re.split(r"\\\\\s*\n", part) if row.strip()]


def _cells_of_latex(text: str) -> tuple[list[str], list[list[str]], str]:
    """``(headers, rows, caption)`` of a LaTeX table, every cell flattened (:func:`_flat`)."""
    head, body = text.split("\\midrule", 1)
    headers = [_flat(c) for c in _latex_rows(head.split("\\toprule", 1)[1])[0]]
    rows = [[_flat(c) for c in row] for row in _latex_rows(body.split("\\bottomrule", 1)[0])]
    caption = text.split("\\caption{", 1)[1].split("\n", 1)[0]
    return headers, rows, caption


def _latex_table(text: str, columns: list[str]) -> list[list[tuple[str, str]]]:
    """Per row, per CSV column, ``(cell, n said elsewhere)``: the LaTeX cell (``""`` for a column the LaTeX version
    leaves out) and the n the layout said once for it (the caption's "Every cell", its header, the row's n column)."""
    headers, rows, caption = _cells_of_latex(text)
    every = re.search(r"Every cell: (n=\d+(?: pairs?)?)", caption)
    named: dict[str, str] = {}
    for header in headers[1:]:
        found = re.search(r"\s*\((n=[^)]*)\)$", header)
        named[header[: found.start()] if found else header] = found.group(1) if found else ""
    has_n = headers[-1] == "n"
    out = []
    for row in rows:
        cells = dict(zip(named, row[1:]))
        moved = every.group(1) if every else ("n=" + row[-1] if has_n else "")
        line = [(row[0], "")]
        for column in columns:
            key = _escape(column)
            line.append((cells[key], moved or named[key]) if key in cells else ("", ""))
        out.append(line)
    return out


def latex_left_out(tex: str, column: str) -> bool:
    """Whether a table's LaTeX version leaves ``column`` to the CSV (its caption says which it leaves), or the
    column is the input-collapse flag (a dagger on the row's label in LaTeX)."""
    found = re.search(r"The CSV and Markdown versions also give (.*?)\.\}", tex)
    left = found.group(1).split(", ") if found else []  # as the caption escaped them
    return _escape(column) in left or column == "input collapsed"


def _cells_of_markdown(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]  # the first is the header
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]


def _shown(cell: str) -> tuple[str, list[float], str, list[float]]:
    """``(text, numbers, count, interval)`` of a printed cell: bold, maths, the ± sign, the ``(n=...)`` count and
    a ``[low, high]`` interval taken apart."""
    import re

    count = ""
    found = re.search(r"\s*(?:\{\\scriptsize )?\((n=\d+(?: of \d+| pairs?)?)\)\}?$", cell)
    if found:
        count, cell = found.group(1), cell[: found.start()]
    interval: list[float] = []
    bracket = re.search(r"\s*\[([-+0-9.]+), ([-+0-9.]+)\]", cell)
    if bracket:
        interval, cell = (
            [float(bracket.group(1)), float(bracket.group(2))],
            cell[: bracket.start()] + cell[bracket.end() :],
        )
    plain = cell.replace("\\textbf{", "").replace("**", "").replace("$", "").rstrip("}").replace("\\pm", "±").strip()
    parts = [p.strip() for p in plain.split("±")]
    try:
        return plain, [float(p) for p in parts], count, interval
    except ValueError:
        return plain, [], count, interval


@pytest.mark.slow
def test_latex_and_markdown_cells_hold_the_csv_values(results: Path) -> None:
    """Every printed cell (LaTeX and Markdown) shows the CSV's mean, std and text, rounded as printed."""
    import re

    from analysis.render import latex_escape as _latex_escape

    tables = results / "results" / "tables"
    checked = 0
    for stem in pd.read_csv(tables / "index.csv")["id"]:
        csv = pd.read_csv(tables / f"{stem}.csv")
        columns = list(dict.fromkeys(re.sub(r" (mean|std|n|text|planned|low|high)$", "", c) for c in csv.columns[1:]))
        markdown = [[(c, "") for c in row] for row in _cells_of_markdown((tables / f"{stem}.md").read_text())]
        for printed, escape in (
            (_latex_table(tex := (tables / f"{stem}.tex").read_text(), columns), _latex_escape),
            (markdown, str),
        ):
            assert len(printed) == len(csv), stem
            for row, cells in zip(csv.itertuples(index=False), printed):
                values = dict(zip(csv.columns, row))
                assert len(cells) == 1 + len(columns), (stem, cells)
                for column, (cell, said) in zip(columns, cells[1:]):
                    if escape is _latex_escape and cell == "" and latex_left_out(tex, column):
                        continue  # a column the LaTeX version leaves to the CSV
                    text, numbers, count, interval = _shown(cell)
                    planned = values.get(f"{column} planned")
                    counted = (planned is not None and not np.isnan(planned) and planned > 0) or (
                        column.startswith("Δ") and not np.isnan(values.get(f"{column} mean", np.nan))
                    )
                    count = count or (said if counted else "")  # an n said once for the row, column or table
                    if planned is not None and not np.isnan(planned) and planned > 0:  # a cell drawn from runs shows n
                        n = int(values[f"{column} n"])
                        assert count == (f"n={n}" if n == planned else f"n={n} of {int(planned)}"), (stem, column, cell)
                    elif column.startswith("Δ") and not np.isnan(
                        values.get(f"{column} mean", np.nan)
                    ):  # paired: n pairs
                        n = int(values[f"{column} n"])
                        assert count == f"n={n} pair{'s' if n != 1 else ''}", (stem, column, cell)
                    else:
                        assert count == "", (stem, column, cell)
                    if f"{column} low" in values and not np.isnan(values[f"{column} low"]):
                        digits = _decimals(text.split("±")[0].strip())
                        assert np.allclose(
                            interval, [values[f"{column} low"], values[f"{column} high"]], atol=0.5 * 10**-digits + 1e-9
                        ), (stem, column, cell)
                    held = values.get(f"{column} text", values.get(column))
                    if isinstance(held, str):  # a text cell: the same text
                        assert text == _shown(escape(held))[0], (stem, column, cell, held)
                        continue
                    mean = values.get(f"{column} mean", np.nan)
                    if np.isnan(mean):  # missing, or an empty note
                        assert text in ("--", ""), (stem, column, cell)
                        continue
                    std, n = values[f"{column} std"], values[f"{column} n"]
                    if text.startswith("<"):  # a p-value below the shown precision
                        assert mean < float(text[1:]), (stem, column)
                        continue
                    digits = _decimals(text.split("±")[0].strip())
                    assert numbers and abs(numbers[0] - mean) <= 0.5 * 10**-digits + 1e-9, (stem, column, cell, mean)
                    if len(numbers) == 2:
                        assert n > 1 and abs(numbers[1] - std) <= 0.5 * 10**-digits + 1e-9, (stem, column, cell, std)
                    else:
                        assert n <= 1 or np.isnan(std), (stem, column, cell)
                    checked += 1
    assert checked > 200


def _decimals(number: str) -> int:
    return len(number.split(".", 1)[1]) if "." in number else 0


def test_a_number_no_finished_run_makes_is_not_applicable_and_a_missing_run_is_missing() -> None:
    """DNE's pixel metrics, the joint flow's forgetting: every run finished without the number ("n/a"), which is not
    a run that is missing or failed ("--", with how many of the planned runs finished)."""
    from analysis.render import NOT_APPLICABLE, Cell, TableSpec

    none = pd.Series([np.nan, np.nan, np.nan])
    spec = TableSpec("T", "0", "t", "c", ["dne", "lost", "half"], ["P-AP"])
    spec.cells[("dne", "P-AP")] = Cell.from_runs(none, pd.Series(["ok", "ok", "ok"]))
    spec.cells[("lost", "P-AP")] = Cell.from_runs(none[:2], pd.Series(["ok", "ok"]), planned=3)
    spec.cells[("half", "P-AP")] = Cell.from_runs(pd.Series([0.5, np.nan]), pd.Series(["ok", "failed"]))
    assert spec.text("dne", "P-AP", markdown=True) == (NOT_APPLICABLE, False) and spec.count("dne", "P-AP") == "n=3"
    assert spec.text("lost", "P-AP", markdown=True) == ("--", False) and spec.count("lost", "P-AP") == "n=0 of 3"
    assert spec.text("half", "P-AP", markdown=True) == ("0.500", False) and spec.count("half", "P-AP") == "n=1 of 2"
    assert "n/a: every run finished" in spec.full_caption


def test_the_documentation_page_is_the_analysis_own_tables_and_counts(results: Path, tmp_path: Path) -> None:
    """`--docs`: the generated page holds the analysis's Markdown tables verbatim, the claims table's verdict counts,
    the claims figure, and where it came from; written twice from the same folder it is the same bytes."""
    from analysis.docs_page import VERDICTS, write_docs

    results = results / "results"
    page = write_docs(results, tmp_path / "docs", commit="abc1234", date="2026-01-01", runs_commit="def5678")
    text = page.read_text()
    for table in sorted((results / "tables").glob("T3_image_auroc*.md")) + sorted(
        (results / "tables").glob("T7_ablation*.md")
    ):
        assert table.read_text().strip() in text
    claims = pd.read_csv(results / "tables" / "claims.csv")
    # the counts the audit itself wrote in the claims table's caption (from its outcomes, not from the CSV's rows)
    caption = re.search(r"Verdicts: ([^.]*)\.", (results / "tables" / "claims.md").read_text())
    assert caption is not None
    written = {v: int(n) for v, n in re.findall(r"([a-z ]+?) (\d+)(?:, |$)", caption.group(1))}
    assert set(written) == set(VERDICTS) and sum(written.values()) == len(claims) == 49
    summary = f"{len(claims)} claims: " + ", ".join(f"{written[v]} {v}" for v in VERDICTS) + "."
    assert summary in text
    assert "at commit abc1234 on 2026-01-01, from " in text and "runs made at commit def5678" in text
    assert all(f"| {claim} |" in text for claim in claims["row"])
    assert (tmp_path / "docs" / "claims_effects.png").is_file() == (
        results / "figures" / "claims_effects.png"
    ).is_file()
    again = write_docs(results, tmp_path / "again", commit="abc1234", date="2026-01-01", runs_commit="def5678")
    assert again.read_bytes() == page.read_bytes()


def test_a_study_gets_the_tables_it_declares_whatever_its_name(results: Path, tmp_path: Path) -> None:
    """Tables follow a study's ``tables`` key: the ablation renamed still gets Table 7 (the same cells, under its
    new name), the depth study without its key gets no Table 9, and the main study's T16 lists the same values."""
    root = write_results(tmp_path)
    workflow = yaml.safe_load((root / "config.yaml").read_text())
    workflow["studies"]["components"] = workflow["studies"].pop("ablation")
    del workflow["studies"]["depth"]["tables"]
    (root / "config.yaml").write_text(yaml.safe_dump(workflow))
    assert analysis_main(["--config", str(root / "config.yaml"), "--results", str(root / "results")]) == 0
    tables = root / "results" / "tables"
    index = pd.read_csv(tables / "index.csv")
    assert "T7_components_synth" in set(index["id"]) and "T7_ablation_synth" not in set(index["id"])
    assert not any(i.startswith("T9_") for i in index["id"])  # declared nothing: no table
    before = pd.read_csv(results / "results" / "tables" / "T7_ablation_synth.csv")
    after = pd.read_csv(tables / "T7_components_synth.csv")
    pd.testing.assert_frame_equal(before, after)
    assert (tables / "T16_summary.csv").read_text() == (results / "results" / "tables" / "T16_summary.csv").read_text()
