"""``persona eval rules`` on the tiny model: every phrasing parses to one constraint, the
three conditions are measured, and the enforced one meets the constraints."""

from __future__ import annotations

from persona_sdk.evals.rules import (
    CONDITIONS,
    PHRASINGS,
    RulesEvalConfig,
    phrasing_constraints,
    plot_rules_eval,
    run_rules_eval,
)


def test_the_phrasings_cover_every_type_at_least_twice():
    kinds = [kind for _, kind, _ in phrasing_constraints(PHRASINGS)]
    assert len(PHRASINGS) >= 30
    assert all(kinds.count(k) >= 2 for k in set(kinds))
    assert len(set(kinds)) == 16


def test_eval_runs_and_enforced_complies(persona, tmp_path):
    config = RulesEvalConfig(prompts=2, max_new_tokens=40, batch=12, phrasings=len(PHRASINGS))
    result = run_rules_eval(persona, config)
    assert set(result.conditions) == set(CONDITIONS)
    enforced = result.conditions["enforced"]
    assert enforced["n"] == len(PHRASINGS) * 2
    failed = [(r["phrasing"], r["text"], r["detail"]) for r in result.rows
              if r["condition"] == "enforced" and not r["passed"]]  # fmt: skip
    assert enforced["compliance"] >= 0.95, failed
    assert set(result.targets) == {"min_enforced_compliance", "degenerate_rate_delta",
                                   "relevance_delta", "speed_ratio"}  # fmt: skip
    assert plot_rules_eval(result, tmp_path / "rules.png").stat().st_size > 0
    assert result.save(tmp_path / "rules.json").stat().st_size > 0
