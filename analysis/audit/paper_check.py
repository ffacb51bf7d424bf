"""The paper against itself: its printed values checked against each other, computed here.

``analysis/paper_tables.csv`` holds the values of the paper's Tables 1, 2 and 7-16 and
its abstract (each row citing its table), and the hyper-parameters of the authors' main
script and of their method outline; ``analysis/literature.csv`` those of Tables
3-6. Each check recomputes a printed quantity from the paper's own numbers (an average
from its categories, a Δ from its two rows, the degrees of freedom an F and its rounded p imply,
the per-task overhead Table 2's configuration implies on the model this harness
builds) and says whether the two agree within the printed rounding.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from analysis import literature
from analysis.audit.paper_values import (
    SelfCheck,
    averages,
    best_continual,
    dfs_for,
    overhead_at_table2,
    paper_values,
    ranges,
    reference_row,
    value,
)


def checks() -> list[SelfCheck]:
    """Every recomputation (see the module docstring)."""
    pv = paper_values()
    out: list[SelfCheck] = []
    # 1. the abstract's pixel AP against the tables'
    mean, sd, tables_pap = (
        value(pv, "abstract", "MoLE-Flow", "P-AP mean"),
        value(pv, "abstract", "MoLE-Flow", "P-AP sd"),
        56.2,
    )
    gap = (tables_pap - mean) / sd
    out.append(
        SelfCheck(
            "Pixel AP: abstract (5 runs) vs Tables 4, 7, 9, 16",
            "abstract; 4; 7; 16",
            f"{mean} ± {sd}; {tables_pap}",
            f"difference {tables_pap - mean:.2f} pp = {gap:.1f} of the abstract's SDs",
            abs(gap) <= 2,
        )
    )
    # 1b. 98.7% of single-task performance
    ratios = {
        "Table 14 I-AUROC": value(pv, "14", "Base Frozen (Ours)", "I-AUC")
        / value(pv, "14", "Complete Separated", "I-AUC"),
        "Table 14 P-AP": value(pv, "14", "Base Frozen (Ours)", "P-AP") / value(pv, "14", "Complete Separated", "P-AP"),
        "Table 1 I-AUROC": value(pv, "1", "MoLE-Flow (Ours)", "I-AUC") / value(pv, "1", "Full Copy (Oracle)", "I-AUC"),
    }
    share = value(pv, "abstract", "MoLE-Flow", "share of single-task performance %")
    out.append(
        SelfCheck(
            '"98.7% of single-task performance" vs the tables\' ratios',
            "abstract; 1; 14",
            f"{share}%",
            ", ".join(f"{k} {100 * v:.1f}%" for k, v in ratios.items()),
            any(abs(100 * v - share) < 0.15 for v in ratios.values()),
        )
    )
    # 2. the tail weight
    t11 = pv[(pv["paper_table"] == "11") & (pv["column"] == "P-AP")]
    best_tail = t11.loc[t11["value"].idxmax(), "row"]
    out.append(
        SelfCheck(
            "Tail weight: Table 2's setting vs Table 11's best",
            "2; 11",
            f"{value(pv, '2', 'Tail Weight', 'Value')}",
            f"Table 11's highest P-AP at {best_tail}",
            float(best_tail) == value(pv, "2", "Tail Weight", "Value"),
        )
    )
    i11 = pv[(pv["paper_table"] == "11") & (pv["column"] == "I-AUC")]["value"].to_numpy()
    out.append(
        SelfCheck(
            '"Improves monotonically with the tail weight": image AUROC',
            "11",
            "monotone",
            " -> ".join(f"{v:g}" for v in i11),
            bool(np.all(np.diff(i11) >= 0)),
        )
    )
    # 2b. the configuration: Table 2 (Table 12's reference for the tail's top-k), the authors' main script, their outline
    printed = {
        "MoLE Blocks": value(pv, "2", "MoLE Blocks", "Value"),
        "Learning Rate": value(pv, "2", "Learning Rate", "Value"),
        "Tail Weight": value(pv, "2", "Tail Weight", "Value"),
        "LogDet Weight": value(pv, "2", "LogDet Weight", "Value"),
        "Tail Top-K Ratio": float(reference_row(pv, "12")),
    }
    for source, label in (("script", "the authors' main script"), ("outline", "the authors' method outline (v1.6)")):
        differ = [
            f"{name} {value(pv, source, name, 'Value'):g} vs {paper:g}"
            for name, paper in printed.items()
            if value(pv, source, name, "Value") != paper
        ]
        out.append(
            SelfCheck(
                f"Configuration: Tables 2 and 12 vs {label}",
                f"2; 12; {source}",
                "Table 2, Table 12's reference",
                "; ".join(differ) if differ else "all equal",
                not differ,
            )
        )
    # 3. the reference row
    refs = {
        "7": value(pv, "7", "Full Model (MoLE6+DIA2)", "I-AUC"),
        "9": value(pv, "9", "M6 N2", "I-AUC"),
        "11": value(pv, "11", "1.0", "I-AUC"),
        "12": value(pv, "12", "0.02", "I-AUC"),
        "13": value(pv, "13", "3", "I-AUC"),
        "14": value(pv, "14", "Base Frozen (Ours)", "I-AUC"),
    }
    out.append(
        SelfCheck(
            "The reference configuration's image AUROC across tables",
            "7; 9; 11-14",
            "one configuration",
            ", ".join(f"T{k} {v:g}" for k, v in refs.items()),
            len(set(refs.values())) == 1,
        )
    )
    # 4. printed averages
    for table in ("3", "4", "5", "6"):
        wrong = averages(table)
        out.append(
            SelfCheck(
                f"Table {table}: printed averages vs their categories' mean",
                table,
                "averages",
                "; ".join(wrong) if wrong else "all within rounding",
                not wrong,
            )
        )
    # 5. the Δ columns
    for table, reference, columns in (
        ("7", "Full Model (MoLE6+DIA2)", ("I-AUC", "P-AP")),
        ("11", "1.0", ("P-AP",)),
        ("12", "0.02", ("P-AP",)),
        ("13", "3", ("P-AP",)),
        ("14", "Base Frozen (Ours)", ("I-AUC", "P-AP")),
    ):
        wrong, compared = [], 0
        for row in pv[(pv["paper_table"] == table) & (pv["column"] == f"Δ {columns[-1]}")]["row"]:
            for column in columns:
                delta = pv[(pv["paper_table"] == table) & (pv["row"] == row) & (pv["column"] == f"Δ {column}")]
                if delta.empty:
                    continue
                compared += 1
                computed = round(value(pv, table, row, column) - value(pv, table, reference, column), 1)
                if abs(computed - float(delta["value"].iloc[0])) > 1e-9:
                    wrong.append(f"{row} Δ {column} {float(delta['value'].iloc[0]):+g} vs {computed:+g}")
        out.append(
            SelfCheck(
                f"Table {table}: printed Δ vs the difference of its rows",
                table,
                "Δ columns",
                "; ".join(wrong) if wrong else f"all {compared} equal",
                compared > 0 and not wrong,  # no Δ cell found is no check passed
            )
        )
    # 8. the per-task overhead Table 2's configuration implies
    counts = overhead_at_table2([16, 32, 64, 128])
    out.append(
        SelfCheck(
            "Per-task overhead at Table 2's configuration (this harness's model, D = 768)",
            "abstract; 1; 2",
            f"{value(pv, 'abstract', 'MoLE-Flow', 'per-task overhead %'):g}%",
            f"{counts['overhead_pct']:.1f}% ({counts['without_dia_pct']:.1f}% without DIA; "
            f"{counts['per_task']:,} / {counts['base']:,} parameters)",
            7.5 <= counts["overhead_pct"] <= 8.5,
        )
    )
    # 11. bold entries against the paper's own rows
    for table in ("4", "5"):  # the tables whose "Ours" average is printed in bold
        found = best_continual(table)
        if found:
            ours, method, best = found
            out.append(
                SelfCheck(
                    f'Table {table}: "Ours" bold as the best continual method',
                    table,
                    f"{ours:.3f} (bold)",
                    f"{method} {best:.3f}",
                    ours >= best,
                )
            )
    ft3 = literature.load()
    ft3 = ft3[(ft3["paper_table"] == "3") & (ft3["method"] == "FT_PatchCore") & (ft3["category"] == "avg")]["value"]
    if not ft3.empty:
        pilot = value(pv, "1", "Fine-tune", "I-AUC") / 100
        out.append(
            SelfCheck(
                "Table 1's 5-class Fine-tune vs Table 3's 15-class FT_PatchCore average",
                "1; 3",
                f"{pilot:.3f}",
                f"{float(ft3.iloc[0]):.3f} (the same number from a different experiment)",
                abs(pilot - float(ft3.iloc[0])) > 1e-9,
            )
        )
    # 10. depth
    t9 = pv[(pv["paper_table"] == "9") & (pv["column"] == "I-AUC")]
    above = t9[t9["value"] > value(pv, "9", "M6 N2", "I-AUC")]["row"].tolist()
    out.append(
        SelfCheck(
            "Table 9: the bold 6/2 image AUROC vs the other depths",
            "9",
            f"{value(pv, '9', 'M6 N2', 'I-AUC')} (bold)",
            f"{len(above)} depth(s) higher: {', '.join(above)}",
            not above,
        )
    )
    # 12. Table 8's F and p: which residual df they imply, the p-values taken as printed (rounded)
    fits_all: set[int] | None = None
    for row in pv[(pv["paper_table"] == "8") & (pv["column"] == "interaction F")]["row"]:
        f_value, p_value = value(pv, "8", row, "interaction F"), value(pv, "8", row, "interaction p")
        dfs = dfs_for(f_value, p_value)
        fits_all = set(dfs) if fits_all is None else fits_all & set(dfs)
        balanced = [df for df in dfs if df % 4 == 0]  # a balanced 2 x 2 design with r runs per cell: 4 (r - 1) df
        p16 = float(stats.f.sf(f_value, 1, 16))
        implied = (f"df {ranges(dfs)}" if dfs else "no df up to 200") + (
            f"; balanced: {', '.join(f'{d} ({d // 4 + 1} runs per cell)' for d in balanced)}"
            if balanced
            else "; none balanced"
        )
        out.append(
            SelfCheck(
                f"Table 8, {row}: residual df its interaction F and rounded p imply (runs per cell not stated)",
                "8",
                f"F {f_value}, p {p_value}",
                f"{implied}; 5 per cell (df 16) would give p = {p16:.3f}",
                bool(balanced),
            )
        )
    out.append(
        SelfCheck(
            "Table 8: one residual df for all five interaction tests (one design, the same runs)",
            "8",
            "F and p per component",
            f"df fitting every row: {ranges(sorted(fits_all or []))}" if fits_all else "no df fits every row",
            bool(fits_all),
        )
    )
    return out
