"""The replicate allocation: fixed by a committed file, seeds counted per configuration, reproducible."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from benchmarks.select_allocation import (
    DEFAULT_SPEC,
    AllocationSpec,
    added_cost,
    combinations,
    comparison,
    load_spec,
    needed,
    spec_commit,
)
from moleflow.errors import ConfigError


@dataclass
class FakeRun:
    seed: int
    memberships: list[tuple[str, str]] = field(default_factory=list)


def _runs() -> dict[str, FakeRun]:
    """A shared reference arm (ablation's MoLE-Flow = interaction's frozen on cell) and one arm of each study."""
    runs = {}
    for seed in range(3):
        runs[f"ref{seed}"] = FakeRun(seed, [("ablation", "MoLE-Flow"), ("interaction", "WA|frozen|on")])
        runs[f"abl{seed}"] = FakeRun(seed, [("ablation", "w/o WA")])
        runs[f"int{seed}"] = FakeRun(seed, [("interaction", "WA|frozen|off")])
    return runs


def test_the_committed_file_is_what_the_search_reads() -> None:
    spec = load_spec(DEFAULT_SPEC)
    config = yaml.safe_load((DEFAULT_SPEC.parents[1] / "config" / "config.yaml").read_text())
    assert set(spec.studies) <= set(config["studies"]) and "main" not in spec.studies and "order" not in spec.studies
    assert spec.objective in ("claims_decided", "parts_decided") and spec.validation_seed != 0  # never the default
    # every study's configured seeds lie within what the search may give it
    for study, k in spec.start.items():
        assert k <= len(config["studies"][study].get("seeds", config["seeds"])) <= spec.max_seeds, study


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budget": 1}, "unknown key 'budget'"),
        ({"objective": "wins"}, "objective must be one of"),
        ({"start": {"ablation": 9}}, "start.ablation must be an integer from 1 to max_seeds"),
    ],
)
def test_a_bad_allocation_file_names_the_file_and_key(tmp_path: Path, change: dict, message: str) -> None:
    data = yaml.safe_load(DEFAULT_SPEC.read_text()) | change
    path = tmp_path / "allocation.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    data = yaml.safe_load(DEFAULT_SPEC.read_text())
    del data["max_seeds"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="missing key 'max_seeds'"):
        load_spec(path)


def test_a_shared_configuration_gets_its_seeds_once_and_serves_every_study() -> None:
    runs = _runs()
    # the interaction study at 3 seeds makes the shared reference's seed 2 a run the ablation reads too
    assert needed(runs, {"ablation": 2, "interaction": 3}) == {
        "ref0", "ref1", "ref2", "abl0", "abl1", "int0", "int1", "int2",
    }  # fmt: skip
    seconds = {rid: 10.0 for rid in runs}
    start = {"ablation": 2, "interaction": 2}
    # +1 seed of the interaction study adds its two arms' seed-2 runs (the shared one once): 20 s on two cores
    assert added_cost(runs, seconds, start, {"ablation": 2, "interaction": 3}) == pytest.approx(10.0)
    # then +1 seed of the ablation adds only its own arm: the reference's seed 2 already exists
    assert added_cost(runs, seconds, start, {"ablation": 3, "interaction": 3}) == pytest.approx(15.0)
    assert added_cost(runs, seconds, start, start) == 0.0


def test_combinations_span_each_study_from_its_start_to_the_most_seeds() -> None:
    spec = AllocationSpec(1, 3, {"a": 2, "b": 1}, 100.0, "claims_decided")
    combos = combinations(spec)
    assert len(combos) == 2 * 3 and combos[0] == {"a": 2, "b": 1} and combos[-1] == {"a": 3, "b": 3}


def test_predicted_and_audited_verdicts_are_compared_only_where_both_test() -> None:
    rows, agree, both = comparison(
        {"C1": "supported", "C2": "not tested here", "C3": "inconclusive"},
        {"C1": "supported", "C2": "supported", "C3": "contradicted"},
    )
    assert (agree, both) == (1, 2)
    assert (
        rows[0] == "| C1 | supported | supported | yes |" and rows[1].endswith("| -- |") and rows[2].endswith("| no |")
    )


def test_the_search_refuses_a_file_with_uncommitted_changes(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    path = tmp_path / "allocation.yaml"
    path.write_text(DEFAULT_SPEC.read_text())
    with pytest.raises(ConfigError, match="uncommitted changes"):
        spec_commit(path)
    git("add", "allocation.yaml")
    git("commit", "-q", "-m", "fix the search")
    commit = spec_commit(path)
    assert len(commit.split()[0]) == 40
    path.write_text(path.read_text() + "\n# changed after the commit\n")
    with pytest.raises(ConfigError, match="uncommitted changes"):
        spec_commit(path)


def test_claims_with_a_suffix_are_ordered_and_compared() -> None:
    from benchmarks.select_allocation import claim_order

    assert sorted(["C19", "C18g", "C18", "O1", "C2", "C18d"], key=claim_order) == [
        "C2",
        "C18",
        "C18d",
        "C18g",
        "C19",
        "O1",
    ]
    rows, agree, both = comparison(
        {"C18g": "contradicted", "O1": "inconclusive"}, {"C18g": "contradicted", "O1": "supported"}
    )
    assert (agree, both) == (1, 2) and rows[0].startswith("| C18g |")


def test_claims_of_studies_outside_the_search_are_shown_but_not_counted() -> None:
    from benchmarks.select_allocation import outside_search

    outside = outside_search(("strategies", "ablation", "interaction", "depth", "sensitivity", "objective"))
    assert {"C1", "C44", "C45", "C18g"} <= outside  # the main and order studies' claims
    assert not {"C3", "C4", "C13", "C20", "C14"} & outside  # every run, the paper's numbers, searched studies
    rows, agree, both = comparison(
        {"C1": "inconclusive", "C20": "supported"}, {"C1": "supported", "C20": "supported"}, outside
    )
    assert (agree, both) == (1, 1) and rows[0] == "| C1 | -- (outside the search) | supported | -- |"
