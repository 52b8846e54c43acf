"""CLI evaluation commands (``persona eval ...``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from persona_sdk.cli.common import JsonOption
from persona_sdk.cli.render import console, emit_json, err_console
from persona_sdk.errors import InvalidInputError
from persona_sdk.validation import validate_int, validate_number

COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


QUALITY_COLUMNS = ("on-topic", "repeated 3-grams", "words")  # each as base→adapter


def _quality(row: dict) -> tuple[str, ...]:
    """The reward-hacking guards of an ``eval adapters`` row, base→adapter."""
    return (f"{row['on_topic_base']:.2f}→{row['on_topic_adapter']:.2f}",
            f"{row['repeated_base']:.0%}→{row['repeated_adapter']:.0%}",
            f"{row['words_base']:.0f}→{row['words_adapter']:.0f}")  # fmt: skip


def parse_shots(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` → ``(1, 2, 4)``; each between 1 and 256."""
    try:
        shots = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise InvalidInputError(
            f"--shots must be integers separated by commas, not {text!r}"
        ) from None
    if not shots or shots[0] < 1 or shots[-1] > 256:
        raise InvalidInputError("--shots must list numbers between 1 and 256")
    return shots


def _run_eval(ctx: typer.Context, run, config, plot: Path | None, plotter, json_: bool,
              check=None, out: Path | None = None):  # fmt: skip
    """Run an eval under a progress bar, write its plot and its full result (``out``);
    print its JSON when asked. ``check(persona, config)`` validates first, so a bad option
    fails before any bar. Returns the result, or None once the JSON is printed."""
    from persona_sdk.evals.plots import png_path

    if plot is not None:
        png_path(plot)  # a bad plot path fails before minutes of work
    with ctx.obj.open() as persona:
        if check is not None:
            check(persona, config)
        with Progress(*COLUMNS, console=err_console) as progress:
            result = run(persona, config, progress)
    if plot is not None:
        plotter(result, plot)
    if out is not None:
        result.save(out)
    if json_:
        emit_json(result.to_dict())
        return None
    return result


app = typer.Typer()  # merged into the top-level `persona` command

evaluation = typer.Typer(
    help="Evaluate personalization against simulated users.", no_args_is_help=True
)
app.add_typer(evaluation, name="eval")


@evaluation.command("edits")
def edits(
    ctx: typer.Context,
    users: int = typer.Option(5, help="Simulated users."),
    rounds: int = typer.Option(20, help="Rounds of generate → edit → learn."),
    max_new_tokens: int = typer.Option(96, help="Most tokens per reply."),
    seed: int = typer.Option(0, help="Seed for users and prompts."),
    plot: Path = typer.Option(None, "--plot", help="Write the cost curves to this PNG."),
    json_: bool = JsonOption,
) -> None:
    """PRELUDE-style edit-cost loop: no learning vs rules only vs oracle."""
    from persona_sdk.evals.edits import CONDITIONS, run_edit_eval
    from persona_sdk.evals.plots import plot_edit_costs, png_path

    validate_int(users, "users", low=1, high=1000)
    validate_int(rounds, "rounds", low=1, high=1000)
    if plot is not None:
        png_path(plot)
    with Progress(*COLUMNS, console=err_console) as progress:
        task = progress.add_task("edit-cost rounds", total=rounds)
        result = run_edit_eval(
            users,
            rounds,
            seed=seed,
            max_new_tokens=max_new_tokens,
            model=ctx.obj.model,
            embedder=ctx.obj.embedder,
            on_round=lambda i, r: progress.update(task, completed=i + 1),
        )
    if plot is not None:
        plot_edit_costs(result, plot)
    summary = result.to_dict()
    if json_:
        emit_json(summary)
        return
    table = Table(title=f"cumulative edit cost, {users} users × {rounds} rounds")
    table.add_column("round", justify="right")
    for condition in CONDITIONS:
        table.add_column(condition, justify="right")
    cumulative = {c: result.cumulative(c) for c in CONDITIONS}
    for r in range(rounds):
        table.add_row(str(r + 1), *(str(cumulative[c][r]) for c in CONDITIONS))
    console.print(table)
    gap = summary["gap_closed"]
    console.print(
        f"rules only closed {'n/a' if gap is None else f'{gap:.0%}'} of the gap between no "
        f"learning and the oracle (target ≥ 50%); rules only cost "
        f"{summary['rules_only_over_no_learning']:.0%} of no learning, oracle "
        f"{summary['oracle_over_no_learning']:.0%}."
    )
    if plot is not None:
        err_console.print(f"plot written to {plot}")


@evaluation.command("reward")
def reward(
    ctx: typer.Context,
    users: int = typer.Option(50, help="Unseen simulated users per seed."),
    shots: str = typer.Option("1,2,4,8,16", help="Pairs per new user, comma-separated."),
    seeds: int = typer.Option(5, help="Independent populations and prompt splits."),
    seen_users: int = typer.Option(200, help="Population users the basis is fit on."),
    indifference: float = typer.Option(
        0.5, help="Share of random pairs each simulated user has no preference on (skips)."
    ),
    plot: Path = typer.Option(None, "--plot", help="Write accuracy vs shots to this PNG."),
    json_: bool = JsonOption,
) -> None:
    """Few-shot reward accuracy for unseen users: SDK vs baselines, active vs random."""
    from persona_sdk.evals.plots import plot_reward_accuracy, png_path
    from persona_sdk.evals.reward import LABELS, RewardEvalConfig, run_reward_eval
    from persona_sdk.simulation.world import RewardWorld

    config = RewardEvalConfig(
        users=validate_int(users, "users", low=1, high=10_000),
        seen_users=validate_int(seen_users, "seen-users", low=2, high=100_000),
        seeds=validate_int(seeds, "seeds", low=1, high=100),
        shots=parse_shots(shots),
        indifference=validate_number(indifference, "indifference", low=0.0, high=0.95),
    )
    if plot is not None:
        png_path(plot)
    with ctx.obj.open() as persona, Progress(*COLUMNS, console=err_console) as progress:
        task = progress.add_task("featurizing the response pool", total=None)
        world = RewardWorld.build(persona.rewards.featurizer)
        progress.update(task, total=1, completed=1)
        task = progress.add_task("unseen users", total=config.users * config.seeds)
        result = run_reward_eval(world, config, lambda n: progress.advance(task, n))
    if plot is not None:
        plot_reward_accuracy(result, plot)
    if json_:
        emit_json(result.to_dict())
        return
    table = Table(title=f"held-out accuracy (%), {config.users} unseen users × "
                  f"{config.seeds} seeds, ±95% CI")  # fmt: skip
    table.add_column("method")
    for n in result.shots:
        table.add_column(f"{n} shots", justify="right")
    for method, label in LABELS.items():
        cells = [f"{100 * a:.1f} ± {100 * c:.1f}"
                 for a, c in zip(result.accuracy[method], result.ci95[method])]  # fmt: skip
        table.add_row(label, *cells)
    console.print(table)
    if plot is not None:
        err_console.print(f"plot written to {plot}")


@evaluation.command("adapters")
def adapters(
    ctx: typer.Context,
    users: int = typer.Option(20, help="Unseen simulated users (0: directions only)."),
    prompts: int = typer.Option(12, help="Held-out prompts per user."),
    direction: list[int] = typer.Option(
        None, "--direction", help="Only this basis direction (repeatable); default: all."
    ),
    direction_prompts: int = typer.Option(24, help="Held-out prompts per basis direction."),
    shots: int = typer.Option(16, help="Pairs each user answers before their adapter."),
    max_new_tokens: int = typer.Option(96, help="Most tokens per reply."),
    seed: int = typer.Option(0, help="Seed for users and prompts."),
    plot: Path = typer.Option(None, "--plot", help="Write both measures to this PNG."),
    json_: bool = JsonOption,
) -> None:
    """Basis adapters vs the base on their own reward; user adapters vs the base on
    simulated users' true utility (held-out prompts)."""
    from persona_sdk.evals.adapters import AdapterEvalConfig, check_directions, run_adapter_eval
    from persona_sdk.evals.plots import plot_adapter_eval

    config = AdapterEvalConfig(
        users=validate_int(users, "users", low=0, high=10_000),
        prompts=validate_int(prompts, "prompts", low=2, high=60),
        directions=tuple(validate_int(k, "direction", low=0) for k in direction)
        if direction
        else None,
        direction_prompts=validate_int(direction_prompts, "direction-prompts", low=2, high=60),
        shots=validate_int(shots, "shots", low=1, high=256),
        max_new_tokens=validate_int(max_new_tokens, "max-new-tokens", low=1, high=2048),
        seed=validate_int(seed, "seed", low=0),
    )
    result = _run_eval(ctx, run_adapter_eval, config, plot, plot_adapter_eval, json_,
                       check=check_directions)  # fmt: skip
    if result is None:
        return
    summary = result.to_dict()
    table = Table(title="basis adapters: own-direction reward vs the base (held-out)")
    for column in ("direction", "axis", "base mean", "adapter mean", "effect (base SDs)",
                   *QUALITY_COLUMNS):  # fmt: skip
        table.add_column(column, justify="right")
    for d in result.directions:
        table.add_row(str(d["direction"]), d["axis"], f"{d['base_mean']:.3f}",
                      f"{d['adapter_mean']:.3f}",
                      f"{d['effect_sd']:+.2f} ± {d['ci95_sd']:.2f}", *_quality(d))  # fmt: skip
    console.print(table)
    table = Table(title="user adapters: true utility gain over the base, ±95% CI")
    for column in ("user", "cares most about", "base", "adapter", "gain", *QUALITY_COLUMNS):
        table.add_column(column, justify="right")
    for u in result.users:
        gain = f"{u['gain']:+.3f} ± {u['ci95']:.3f}"
        table.add_row(str(u["user"]), ", ".join(u["top"]), f"{u['base_utility']:.3f}",
                      f"{u['adapter_utility']:.3f}", gain, *_quality(u))  # fmt: skip
    console.print(table)
    console.print(
        f"{summary['directions_passing']}/{len(result.directions)} directions raise their "
        f"reward ≥ 0.5 SD; {summary['share_improved']:.0%} of users gain (target ≥ 70%)."
    )
    if plot is not None:
        err_console.print(f"plot written to {plot}")


@evaluation.command("generation")
def generation(
    ctx: typer.Context,
    users: int = typer.Option(20, help="Unseen simulated users."),
    prompts: int = typer.Option(10, help="Held-out prompts per user."),
    shots: int = typer.Option(16, help="Pairs each user answers (they also state rules)."),
    max_new_tokens: int = typer.Option(64, help="Most tokens per reply."),
    users_per_batch: int = typer.Option(4, help="Users whose requests share one batch."),
    seed: int = typer.Option(0, help="Seed for users, prompts and sampling."),
    methods: str = typer.Option(
        None,
        help="Only these methods, comma-separated (base, rules only and the full "
        "pipeline are always run).",
    ),
    checkpoint: Path = typer.Option(
        None, help="Save progress here after every batch; rerun the same command to resume."
    ),
    plot: Path = typer.Option(None, "--plot", help="Write the comparison to this PNG."),
    json_: bool = JsonOption,
) -> None:
    """Mean true utility of simulated users' replies: base, rules only, adapter at
    α = 0.5/1/2, rules + guidance, and the full pipeline with best-of-4."""
    from functools import partial

    from persona_sdk.evals.generation import (
        GenerationEvalConfig,
        open_checkpoint,
        run_generation_eval,
    )
    from persona_sdk.evals.plots import plot_generation_eval

    config = GenerationEvalConfig(
        users=validate_int(users, "users", low=2, high=10_000),
        prompts=validate_int(prompts, "prompts", low=1, high=60),
        shots=validate_int(shots, "shots", low=1, high=256),
        max_new_tokens=validate_int(max_new_tokens, "max-new-tokens", low=1, high=2048),
        users_per_batch=validate_int(users_per_batch, "users-per-batch", low=1, high=256),
        seed=validate_int(seed, "seed", low=0),
    )
    chosen = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    run = partial(run_generation_eval, methods=chosen, checkpoint=checkpoint)
    check = partial(open_checkpoint, methods=chosen, path=checkpoint)  # fails before the bar
    result = _run_eval(ctx, run, config, plot, plot_generation_eval, json_, check)
    if result is None:
        return
    table = Table(title="mean true utility by method, ±95% CI over users")
    for column in ("method", "utility", "utility over pool", "full pipeline gain (paired)"):
        table.add_column(column, justify="right")
    for m in result.methods:
        gain = result.gains.get(m["method"])
        shown = f"{gain['mean']:+.4f} ± {gain['ci95']:.4f}" if gain else "—"
        pool = m["over_pool"]
        table.add_row(m["method"], f"{m['mean']:.4f} ± {m['ci95']:.4f}",
                      f"{pool['mean']:.4f} ± {pool['ci95']:.4f}", shown)  # fmt: skip
    console.print(table)
    _generation_quality(result)
    if plot is not None:
        err_console.print(f"plot written to {plot}")


def _generation_quality(result) -> None:
    """The quality guards beside each method's quality-adjusted utility, then the bars."""
    table = Table(title="quality of the replies, and utility where broken replies score the base's")
    for column in ("method", "degenerate", "base NLL/token", "as prompted", "relevance",
                   "words", "quality-adjusted utility"):  # fmt: skip
        table.add_column(column, justify="right")
    for m in result.methods:
        q, adjusted = m["quality"], m["quality_adjusted"]
        nll, prompted = (
            "—" if q.get(key) is None else f"{q[key]:.3f}"
            for key in ("nll_per_token", "nll_per_token_as_prompted")
        )
        utility = f"{adjusted['mean']:.4f} ± {adjusted['ci95']:.4f}"
        table.add_row(m["method"], f"{q['degenerate_rate']:.3f}", nll, prompted,
                      f"{q['relevance']:.3f}", f"{q['words']:.1f}", utility)  # fmt: skip
    console.print(table)
    for name, bar in result.targets.items():
        value = bar["value"] if isinstance(bar["value"], bool) else f"{bar['value']:+.3f}"
        console.print(
            f"{name}: {value} (target {bar['target']}) {'met' if bar['met'] else 'NOT met'}"
        )


@evaluation.command("rules")
def rules(
    ctx: typer.Context,
    prompts: int = typer.Option(10, help="Prompts each rule phrasing is paired with."),
    max_new_tokens: int = typer.Option(48, help="Most tokens per reply."),
    batch: int = typer.Option(16, help="Rows per decode."),
    phrasings: int = typer.Option(0, help="Use only the first N phrasings (0: all)."),
    plot: Path = typer.Option(None, "--plot", help="Write compliance and quality to this PNG."),
    out: Path = typer.Option(None, "--out", help="Write the full result (every reply) as JSON."),
    json_: bool = JsonOption,
) -> None:
    """Checkable rules: compliance with no rule, the rule in the prompt only, and the rule
    enforced while decoding; with degenerate rate, base NLL per token, relevance, tokens/s."""
    from persona_sdk.evals.rules import (
        PHRASINGS,
        PROMPTS,
        RulesEvalConfig,
        plot_rules_eval,
        run_rules_eval,
    )

    config = RulesEvalConfig(
        prompts=validate_int(prompts, "prompts", low=1, high=len(PROMPTS)),
        max_new_tokens=validate_int(max_new_tokens, "max-new-tokens", low=8, high=2048),
        batch=validate_int(batch, "batch", low=1, high=256),
        phrasings=validate_int(phrasings, "phrasings", low=0, high=len(PHRASINGS))
        or len(PHRASINGS),
    )
    result = _run_eval(ctx, run_rules_eval, config, plot, plot_rules_eval, json_, out=out)
    if result is None:
        return
    _rules_tables(result)
    if plot is not None:
        err_console.print(f"plot written to {plot}")


def _rules_tables(result) -> None:
    """Per-type compliance, then each condition's quality and speed, then the targets."""
    from persona_sdk.evals.rules import CONDITIONS

    table = Table(title="compliance by constraint type")
    for column in ("type", *CONDITIONS):
        table.add_column(column, justify="right")
    for kind, values in result.per_type.items():
        table.add_row(kind, *(f"{values[c]:.2f}" for c in CONDITIONS))
    console.print(table)
    table = Table(title="quality and speed")
    for column in ("condition", "compliance", "degenerate", "NLL/token", "relevance", "tokens/s",
                   "row-steps/s"):  # fmt: skip
        table.add_column(column, justify="right")
    for name, c in result.conditions.items():
        nll = "—" if c["nll_per_token"] is None else f"{c['nll_per_token']:.3f}"
        table.add_row(name, f"{c['compliance']:.3f}", f"{c['degenerate_rate']:.3f}", nll,
                      f"{c['relevance']:.3f}", f"{c['tokens_per_s'] or 0:.1f}",
                      f"{c['row_steps_per_s'] or 0:.1f}")  # fmt: skip
    console.print(table)
    for name, target in result.targets.items():
        mark = "met" if target["met"] else "NOT met"
        console.print(f"{name}: {target['value']:.3f} (target {target['target']}) {mark}")
