"""CLI commands of the reward model: ``onboard`` and the ``basis`` group."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.panel import Panel
from rich.progress import Progress

from persona_sdk.cli.common import JsonOption, open_persona
from persona_sdk.cli.render import (
    axis_display_name,
    console,
    emit_json,
    err_console,
    plain,
    weight_bars,
)
from persona_sdk.errors import InvalidInputError
from persona_sdk.validation import validate_int

ANSWERS = {"a": "a", "b": "b", "s": "skip", "q": "quit"}


def _read_answers(path: Path) -> list[str]:
    """A/B answers from a file: one per line, or a JSON list; s skips, q stops."""
    if not path.is_file():
        raise InvalidInputError(f"no answers file at {path}")
    text = path.read_text(encoding="utf-8").strip()
    items = json.loads(text) if text.startswith("[") else text.split()
    answers = [str(item).strip().lower() for item in items]
    bad = [a for a in answers if a not in ANSWERS]
    if bad:
        raise InvalidInputError(f"answers must be A, B, S (skip) or Q (quit), not {bad[0]!r}")
    return [ANSWERS[a] for a in answers]


app = typer.Typer()  # merged into the top-level `persona` command


@app.command()
def onboard(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    questions: int = typer.Option(5, help="How many A/B questions to ask."),
    answers: Path = typer.Option(
        None, "--answers", help="Answer from a file (A/B/S/Q per line) instead of asking."
    ),
    json_: bool = JsonOption,
) -> None:
    """Ask USER the most informative A/B questions and learn their taste live."""
    validate_int(questions, "questions", low=1, high=100)
    scripted = _read_answers(answers) if answers is not None else None
    asked = []
    with open_persona(ctx) as persona:
        user = persona.user(user_id)
        for n in range(questions):
            if scripted is not None and n >= len(scripted):
                break
            with err_console.status("choosing a question…"):
                question = user.next_question()
            if not json_:
                console.print(
                    Panel(plain(question.prompt), title=f"question {n + 1}", expand=False)
                )
                console.print(Panel(plain(question.a), title="A", border_style="cyan"))
                console.print(Panel(plain(question.b), title="B", border_style="magenta"))
            answer = scripted[n] if scripted is not None else _ask()
            if answer == "quit":
                break
            if answer != "skip":
                chosen, rejected = (
                    (question.a, question.b) if answer == "a" else (question.b, question.a)
                )
                user.add_pair(question.prompt, chosen, rejected, source="onboarding")
            asked.append({**question.to_dict(), "answer": answer})
            if not json_:
                console.print(weight_bars(user.reward_profile()))
        profile = user.reward_profile() if user.exists else None
    if json_:
        emit_json({"user_id": user_id, "questions": asked,
                   "profile": profile.to_dict() if profile else None})  # fmt: skip
    elif not asked:
        console.print("no questions answered; nothing was stored")


basis = typer.Typer(help="The reward basis: fit it on your users, inspect its axes.",
                    no_args_is_help=True)  # fmt: skip
app.add_typer(basis, name="basis")


@basis.command("show")
def show_basis(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """Show the basis in use: its axes, what each correlates with, extreme replies."""
    with open_persona(ctx) as persona:
        current = persona.rewards.basis
    if json_:
        emit_json({"basis_id": current.basis_id, "featurizer": current.featurizer,
                   "method": current.method, "stats": current.stats,
                   "prior_mean": current.prior_mean.round(4).tolist(),
                   "axes": [a.to_dict() for a in current.axes]})  # fmt: skip
        return
    console.print(
        f"basis {current.basis_id}: {current.rank} axes over {current.featurizer}",
        highlight=False,
    )
    for k, axis in enumerate(current.axes):
        top = ", ".join(f"{n} {c:+.2f}" for n, c in list(axis.correlations.items())[:3])
        name = axis_display_name(axis.name, k)
        console.print(f"[bold]{k + 1}. {name}[/]  ({top})", highlight=False)
        for example in axis.top_examples[:1]:
            console.print(f"   + {example}", highlight=False)
        for example in axis.bottom_examples[:1]:
            console.print(f"   − {example}", highlight=False)


@basis.command("fit")
def fit(
    ctx: typer.Context,
    data: Path = typer.Argument(..., metavar="DATA.jsonl", help="user_id, prompt, chosen, "
                                "rejected per line (or user_id + pairs)."),
    out: Path = typer.Option(None, "--out", help="Basis file (default: DATA_DIR/basis.npz, "
                             "which this data dir then uses)."),
    rank: int = typer.Option(8, help="Number of reward axes K."),
    steps: int = typer.Option(300, help="Adam steps of the joint fit."),
    json_: bool = JsonOption,
) -> None:  # fmt: skip
    """Fit a reward basis on your own population's pairs."""
    from persona_sdk.reward.fit import BasisConfig, fit_reward_basis
    from persona_sdk.reward.population import featurize_population, read_population
    from persona_sdk.reward.rewards import DATA_DIR_BASIS

    config = BasisConfig(rank=validate_int(rank, "rank", low=1, high=64),
                         steps=validate_int(steps, "steps", low=1, high=100_000))  # fmt: skip
    population = read_population(data)
    with open_persona(ctx) as persona:
        featurizer = persona.rewards.featurizer
        with Progress(console=err_console) as progress:
            task = progress.add_task("featurizing pairs", total=len(population))
            pairs, sample, texts = featurize_population(
                population, featurizer, lambda n: progress.advance(task, n)
            )
            task = progress.add_task("fitting the basis", total=config.steps)
            result = fit_reward_basis(pairs, featurizer, sample, texts, config,
                                      lambda n: progress.advance(task, n),
                                      {"source": str(data)})  # fmt: skip
        target = out or persona.data_dir / DATA_DIR_BASIS
        result.save(target)
        if out is None:
            persona.rewards.use_basis(result)
    summary = {"path": str(target), "basis_id": result.basis_id, **result.stats,
               "axes": result.axis_names}  # fmt: skip
    if json_:
        emit_json(summary)
        return
    console.print(
        f"fit basis {result.basis_id} on {result.stats['pairs']} pairs of "
        f"{result.stats['users']} users: train accuracy {result.stats['train_accuracy']:.1%}"
        f"\naxes: {'; '.join(result.axis_names)}\nwritten to {target}",
        highlight=False,
    )


def _ask() -> str:
    while True:
        reply = typer.prompt("A or B? (s: skip, q: quit)").strip().lower()
        if reply in ANSWERS:
            return ANSWERS[reply]
        err_console.print("please answer A, B, s or q")
