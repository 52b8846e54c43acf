"""CLI commands of LoRA adapters: ``persona adapters build-basis|show|export|vllm-args|
finetune``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from persona_sdk.cli.common import JsonOption, existing_user, open_persona
from persona_sdk.cli.render import console, emit_json
from persona_sdk.errors import InvalidInputError
from persona_sdk.validation import validate_int, validate_number

if TYPE_CHECKING:
    from persona_sdk.adapters.config import BuildConfig
    from persona_sdk.adapters.manifest import AdapterManifest

app = typer.Typer()  # merged into the top-level `persona` command

adapters = typer.Typer(
    help="LoRA adapters: basis adapters per reward direction, per-user combinations, "
    "export, fine-tune.",
    no_args_is_help=True,
)
app.add_typer(adapters, name="adapters")


@adapters.command("build-basis")
def build_basis(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Output folder (default: "
                             "DATA_DIR/basis_adapters, which this data dir then uses)."),
    rank: int = typer.Option(8, help="LoRA rank of each basis adapter."),
    steps: int = typer.Option(30, help="DPO steps per direction."),
    learning_rate: float = typer.Option(1e-3, "--lr", help="DPO learning rate."),
    beta: float = typer.Option(0.1, help="DPO β."),
    pairs_per_prompt: int = typer.Option(2, help="Pairs per train prompt: its i-th "
                                         "best reply under r_k against a lower one."),
    pairing: str = typer.Option("extremes", help="Which lower reply: 'extremes' (the "
                                "i-th worst) or 'nearest' (the lower-half reply sharing "
                                "the most words: a minimal pair)."),
    contrast_pairs: bool = typer.Option(False, help="Also pair each train prompt's best "
                                        "reply against the best reply to another prompt, "
                                        "so replies that ignore the request lose."),
    direction: list[int] = typer.Option(None, "--direction", help="Only this direction "
                                        "(repeatable); default: every direction."),
    retrain: bool = typer.Option(False, help="Train the --direction adapters again even "
                                 "if finished; the other directions are kept."),
    pool: Path = typer.Option(None, "--pool", help="Replies to rank (pool JSONL from "
                              "`python -m persona_sdk.simulation.pool_builder`; with "
                              "--samples-per-prompt, only its prompts); default: the "
                              "shipped pool, sampled from the embedded model."),
    samples_per_prompt: int = typer.Option(0, help="Rank the base model's own replies "
                                           "instead of the pool's: this many sampled per "
                                           "train prompt (cached in the output folder)."),
    sample_prompts: int = typer.Option(None, help="With --samples-per-prompt: how many "
                                       "train prompts to sample (default: all)."),
    json_: bool = JsonOption,
) -> None:  # fmt: skip
    """Train one LoRA per reward direction for the base model (--model); resumable."""
    config = _build_config(rank=rank, steps=steps, learning_rate=learning_rate, beta=beta,
                           pairs_per_prompt=pairs_per_prompt, pairing=pairing,
                           contrast_pairs=contrast_pairs, direction=direction,
                           samples_per_prompt=samples_per_prompt,
                           sample_prompts=sample_prompts)  # fmt: skip
    if retrain and not direction:
        raise InvalidInputError("--retrain needs --direction (which adapters to retrain)")
    if sample_prompts is not None and not samples_per_prompt:
        raise InvalidInputError("--sample-prompts needs --samples-per-prompt")
    manifest, target = _train_basis_adapters(ctx, config, pool, out, progress=not json_,
                                             retrain=retrain)  # fmt: skip
    _report_basis_adapters(manifest, target, json_)


def _build_config(
    *,
    rank: int,
    steps: int,
    learning_rate: float,
    beta: float,
    pairs_per_prompt: int,
    pairing: str,
    contrast_pairs: bool,
    direction: list[int] | None,
    samples_per_prompt: int,
    sample_prompts: int | None,
) -> BuildConfig:
    """``build-basis``'s options, validated, as a build config."""
    from persona_sdk.adapters.config import BuildConfig, DPOConfig, LoraSpec

    return BuildConfig(
        lora=LoraSpec(rank=validate_int(rank, "rank", low=1, high=256),
                      alpha=2.0 * rank),
        dpo=DPOConfig(steps=validate_int(steps, "steps", low=1, high=100_000),
                      learning_rate=validate_number(learning_rate, "lr", low=1e-7, high=1.0),
                      beta=validate_number(beta, "beta", low=1e-4, high=100.0)),
        pairs_per_prompt=validate_int(pairs_per_prompt, "pairs-per-prompt", low=1,
                                      high=1000),
        contrast_pairs=contrast_pairs,
        pairing=pairing,
        directions=tuple(direction) if direction else None,
        samples_per_prompt=validate_int(samples_per_prompt, "samples-per-prompt", low=0,
                                        high=64),
        sample_prompts=None if sample_prompts is None
        else validate_int(sample_prompts, "sample-prompts", low=1),
    )  # fmt: skip


def _train_basis_adapters(
    ctx: typer.Context,
    config: BuildConfig,
    pool: Path | None,
    out: Path | None,
    progress: bool,
    retrain: bool,
) -> tuple[AdapterManifest, Path]:
    """Build the basis adapters of the --model into ``out`` (default: the data dir's);
    returns the manifest and the folder."""
    from persona_sdk.adapters.build import build_basis_adapters
    from persona_sdk.adapters.manager import BASIS_ADAPTERS_DIR
    from persona_sdk.decoding.models import load_model
    from persona_sdk.reward.pool import FeaturizedPool, read_pool

    settings = ctx.obj
    with open_persona(ctx) as persona:
        basis = persona.rewards.basis
        entries = read_pool(pool) if pool is not None else None
        world = FeaturizedPool.build(persona.rewards.featurizer, entries)
        host = load_model(settings.model, settings.device, shared=False)
        target = out or persona.data_dir / BASIS_ADAPTERS_DIR
        manifest = build_basis_adapters(host, basis, world, target, config,
                                        progress=progress, retrain=retrain,
                                        featurizer=persona.rewards.featurizer)  # fmt: skip
    return manifest, target


def _report_basis_adapters(manifest: AdapterManifest, target: Path, json_: bool) -> None:
    summary = {
        "path": str(target),
        "base_model": manifest.base_model,
        "basis_id": manifest.basis_id,
        "directions": {k: v["stats"] for k, v in manifest.directions.items()},
    }
    if json_:
        emit_json(summary)
        return
    for k, entry in sorted(manifest.directions.items(), key=lambda kv: int(kv[0])):
        stats = entry["stats"]
        console.print(f"direction {k} ({stats['axis']}): {stats['steps']} steps, "
                      f"final loss {stats['final_loss']:.3f}, {stats['seconds']:.0f} s",
                      highlight=False)  # fmt: skip
    console.print(f"written to {target}", highlight=False)


@adapters.command("show")
def show(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    json_: bool = JsonOption,
) -> None:
    """Show the adapter USER is served with: generated or fine-tuned, rank, mix."""
    with open_persona(ctx) as persona:
        user = existing_user(persona, user_id)
        info = persona.adapters.info(user.id)
        info["finetune_running"] = _running(persona, user.id)
    if json_:
        emit_json(info)
        return
    console.print(
        f"{user_id}: {info['source']} adapter, rank {info['rank']}, "
        f"{info['megabytes']} MB, version {info['version']}",
        highlight=False,
    )
    if info.get("finetune"):
        ft = info["finetune"]
        console.print(f"fine-tuned on {ft['pairs']} pairs at {ft['created']}",
                      highlight=False)  # fmt: skip
    if info["finetune_running"]:
        console.print(f"a fine-tune is running (pid {info['finetune_running']})")
    if info.get("note"):
        console.print(f"note: {info['note']}", highlight=False)
    for name, c in info["coefficients"].items():
        bar = "█" * round(abs(c) * 30)
        console.print(f"  {name:<32} {c:+.3f} {bar}", highlight=False)


@adapters.command("export")
def export(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    out: Path = typer.Argument(None, metavar="[DIR]"),
    out_option: Path = typer.Option(None, "--out", help="Same as DIR."),
    target: str = typer.Option("peft", "--for", help="'peft': DIR is the adapter folder; "
                               "'vllm': the exact adapter goes to DIR/persona-USER-vVERSION "
                               "(see `persona adapters vllm-args`)."),
    max_rank: int = typer.Option(None, "--max-rank", help="Truncate by SVD to this rank "
                                 "(--for peft only; the vLLM export is exact)."),
    prune: bool = typer.Option(False, "--prune", help="--for vllm: remove USER's older "
                               "versions from DIR."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty DIR."),
    json_: bool = JsonOption,
) -> None:  # fmt: skip
    """Write USER's adapter as a standard PEFT folder (PeftModel, vLLM, LoRAX, SGLang)."""
    folder = out or out_option
    if folder is None:
        raise InvalidInputError("give the output folder: DIR or --out DIR")
    if target not in ("peft", "vllm"):
        raise InvalidInputError(f"--for must be peft or vllm, not {target!r}")
    if target == "vllm":
        _export_vllm(ctx, user_id, folder, max_rank, prune, force, json_)
        return
    with open_persona(ctx) as persona:
        user = existing_user(persona, user_id)
        report = persona.adapters.export(user.id, folder, max_rank, force)
    if json_:
        emit_json(report)
        return
    line = f"exported {report['source']} adapter of {user_id}, rank {report['rank']}, to {folder}"
    if report["max_rank"] is not None:
        line += f" (relative error of truncation {report['relative_error']:.2%})"
    console.print(line, highlight=False)


def _export_vllm(ctx: typer.Context, user_id: str, root: Path, max_rank: int | None,
                 prune: bool, force: bool, json_: bool) -> None:  # fmt: skip
    """``export --for vllm``: the exact adapter under its versioned name."""
    from persona_sdk.adapters import vllm

    if max_rank is not None:
        raise InvalidInputError("--max-rank truncates; the vLLM export is exact (rank K·r)")
    with open_persona(ctx) as persona:
        user = existing_user(persona, user_id)
        report = vllm.export_vllm(persona.adapters, user.id, root, force)
        report["pruned"] = vllm.prune(root, user.id, report["version"]) if prune else []
    if json_:
        emit_json(report)
        return
    done = "exported" if report["written"] else "already exported"
    console.print(f"{done} {report['name']} ({report['source']}, rank {report['rank']}; "
                  f"vLLM --max-lora-rank {report['max_lora_rank']}) to {report['path']}",
                  highlight=False)  # fmt: skip
    for name in report["pruned"]:
        console.print(f"removed {name}", highlight=False)


@adapters.command("vllm-args")
def vllm_args(
    ctx: typer.Context,
    users: list[str] = typer.Argument(None, metavar="[USERS]..."),
    root: Path = typer.Option(Path("."), "--dir", help="Where `export --for vllm` wrote "
                              "the adapters."),
    max_loras: int = typer.Option(None, "--max-loras", help="Adapters in one GPU batch "
                                  "(default: every listed user)."),
    json_: bool = JsonOption,
) -> None:  # fmt: skip
    """Print the `vllm serve` command for USERS' current exported adapters (default: every
    user exported under --dir)."""
    from persona_sdk.adapters import vllm

    with open_persona(ctx) as persona:
        for user_id in users or []:
            existing_user(persona, user_id)
        modules = vllm.current_modules(persona.adapters, root, list(users or []))
    args = vllm.vllm_args(modules, max_loras)
    if json_:
        emit_json(args)
        return
    if args["rank_rounded_up"]:
        console.print(f"# adapter rank {args['rank']} rounded up to --max-lora-rank "
                      f"{args['max_lora_rank']} (vLLM accepts "
                      f"{', '.join(map(str, vllm.VLLM_LORA_RANKS))})", highlight=False)  # fmt: skip
    console.out(args["command"], highlight=False)


@adapters.command("finetune")
def finetune(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    min_pairs: int = typer.Option(50, "--min-pairs", help="Refuse below this many pairs."),
    steps: int = typer.Option(30, help="DPO steps."),
    learning_rate: float = typer.Option(5e-4, "--lr", help="DPO learning rate."),
    background: bool = typer.Option(False, "--background", help="Run detached; "
                                    "`persona adapters show` reports it."),
    json_: bool = JsonOption,
) -> None:  # fmt: skip
    """DPO on USER's own pairs, starting from their generated adapter."""
    from persona_sdk.adapters.config import DPOConfig
    from persona_sdk.adapters.finetune import finetune_user

    config = DPOConfig(steps=validate_int(steps, "steps", low=1, high=100_000),
                       learning_rate=validate_number(learning_rate, "lr", low=1e-7,
                                                     high=1.0))  # fmt: skip
    validate_int(min_pairs, "min-pairs", low=1)
    with open_persona(ctx) as persona:
        user = existing_user(persona, user_id)
        pairs = len(persona.store.memories(user.id, kind="pair"))
        if background:
            if pairs < min_pairs:  # refuse now, not in a detached process
                finetune_user(persona.adapters, user.id, config, min_pairs, progress=False)
            pid = _spawn(persona, ctx, user.id, min_pairs, steps, learning_rate)
            result = {"user_id": user.id, "background": True, "pid": pid}
        else:
            result = finetune_user(persona.adapters, user.id, config, min_pairs, progress=not json_)
    if json_:
        emit_json(result)
    elif background:
        console.print(f"fine-tuning {user_id} in the background (pid {result['pid']})")
    else:
        console.print(f"fine-tuned {user_id} on {result['pairs']} pairs: loss "
                      f"{result['first_loss']:.3f} → {result['final_loss']:.3f}; "
                      "served from the next request", highlight=False)  # fmt: skip


def _status_file(persona, user_id: str) -> Path:
    from persona_sdk.adapters.manager import USER_ADAPTERS_DIR

    return persona.data_dir / USER_ADAPTERS_DIR / f"{user_id}.finetune.pid"


def _spawn(persona, ctx, user_id, min_pairs, steps, learning_rate) -> int:
    settings = ctx.obj
    status = _status_file(persona, user_id)
    status.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "persona_sdk.cli.main", "--data", str(settings.data)]
    if settings.model:
        command += ["--model", settings.model]
    command += ["adapters", "finetune", user_id, "--min-pairs", str(min_pairs),
                "--steps", str(steps), "--lr", str(learning_rate)]  # fmt: skip
    log = status.with_suffix(".log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    status.write_text(str(process.pid))
    return process.pid


def _running(persona, user_id: str) -> int | None:
    status = _status_file(persona, user_id)
    try:
        pid = int(status.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid
