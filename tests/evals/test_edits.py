"""The edit-cost loop and its CLI, on the tiny model (the real run is a benchmark)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from persona_sdk.cli.main import app
from persona_sdk.evals.edits import CONDITIONS, EditEvalResult, run_edit_eval
from persona_sdk.evals.plots import plot_edit_costs


@pytest.mark.slow
def test_edit_loop_runs_and_learns(tiny_model_dir, tmp_path):
    result = run_edit_eval(2, 3, seed=1, max_new_tokens=12, model=str(tiny_model_dir))
    assert set(result.cost) == set(CONDITIONS)
    assert all(len(result.cost[c]) == 3 and len(result.cost[c][0]) == 2 for c in CONDITIONS)
    assert all(v >= 0 for c in CONDITIONS for v in result.per_round(c))
    assert result.cumulative("oracle")[-1] == result.totals["oracle"]
    # every non-trivial edit was fed back, so the learning users hold inferred rules
    assert sum(result.rules_learned.values()) > 0
    path = plot_edit_costs(result, tmp_path / "costs.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_gap_closed_arithmetic():
    cost = {"no_learning": [[10, 10]], "rules_only": [[6, 8]], "oracle": [[4, 4]]}
    result = EditEvalResult(2, 1, 0, "m", cost)
    assert result.totals == {"no_learning": 20, "rules_only": 14, "oracle": 8}
    assert result.gap_closed == 0.5
    assert result.to_dict()["target_gap_closed>=0.5"] is True
    flat = EditEvalResult(2, 1, 0, "m", {c: [[3, 3]] for c in CONDITIONS})
    assert flat.gap_closed is None


@pytest.mark.slow
def test_cli_eval_edits(tiny_model_dir, tmp_path):
    plot = tmp_path / "edits.png"
    args = [
        "--model",
        str(tiny_model_dir),
        "eval",
        "edits",
        "--users",
        "2",
        "--rounds",
        "2",
        "--max-new-tokens",
        "8",
        "--json",
        "--plot",
        str(plot),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["total_cost"]) == set(CONDITIONS) and len(data["cumulative"]["oracle"]) == 2
    assert plot.exists()
    bad = CliRunner().invoke(app, ["eval", "edits", "--users", "0"])
    assert bad.exit_code == 2 and "users must be between 1" in bad.stderr
    bad_plot = CliRunner().invoke(app, ["eval", "edits", "--plot", str(tmp_path / "x.jpg")])
    assert bad_plot.exit_code == 2 and ".png" in bad_plot.stderr
