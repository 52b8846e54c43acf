"""LoRA adapters on the tiny model: the basis build, exact per-user combination, the LRU
cache, PEFT export (with SVD truncation), fine-tune, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from persona_sdk import AdapterError, InvalidInputError, NotEnoughDataError, Persona
from persona_sdk.adapters.build import build_basis_adapters, direction_pairs, is_held_out
from persona_sdk.adapters.combine import coefficients, truncate
from persona_sdk.adapters.config import BuildConfig, DPOConfig, LoraSpec
from persona_sdk.adapters.manifest import MANIFEST, model_fingerprint
from persona_sdk.adapters.serving import AdapterServer, module_name
from persona_sdk.decoding.models import load_model
from tests.helpers import PAIRS, add_pairs, assert_error


def test_build_writes_manifest_and_resumes(built, tiny_host, world, basis, tiny_model_dir):
    out, manifest = built
    data = json.loads((out / MANIFEST).read_text())
    assert sorted(data["directions"], key=int) == [str(k) for k in range(8)]
    assert data["base_fingerprint"] == model_fingerprint(tiny_host.model)
    assert data["lora"]["rank"] == 2 and data["loss"] == "dpo"
    assert data["basis_id"] == basis.basis_id
    for entry in data["directions"].values():
        assert (out / entry["folder"] / "adapter_config.json").is_file()
        assert entry["stats"]["dpo"]["steps"] == 2 and entry["stats"]["pairs"] > 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    again = build_basis_adapters(host, basis, world, out, progress=False)
    assert again.directions == manifest.directions  # finished directions are not retrained
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}


@pytest.mark.slow
def test_retrain_replaces_only_the_named_directions(built, tiny_model_dir, world, basis, tmp_path):
    import shutil

    out = tmp_path / "adapters"
    shutil.copytree(built[0], out)
    weights = lambda: {p.parent.name: p.read_bytes() for p in out.rglob("*.safetensors")}  # noqa: E731
    before = weights()
    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    dpo = DPOConfig(steps=3, batch_pairs=2, learning_rate=0.05)
    config = BuildConfig(lora=LoraSpec(rank=2, alpha=4.0), dpo=dpo, directions=(1,))
    manifest = build_basis_adapters(host, basis, world, out, config, progress=False, retrain=True)
    after = weights()
    assert {k for k in before if before[k] != after[k]} == {"direction_1"}
    assert manifest.directions["1"]["stats"]["dpo"]["steps"] == 3
    assert json.loads((out / MANIFEST).read_text())["directions"]["1"]["stats"]["steps"] == 3
    with pytest.raises(AdapterError, match="one shape"):  # another LoRA shape: refused
        build_basis_adapters(host, basis, world, out, BuildConfig(directions=(1,)),
                             progress=False, retrain=True)  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"direction 8 is outside 0\.\.7"):
        bad = BuildConfig(lora=config.lora, directions=(8,))
        build_basis_adapters(host, basis, world, out, bad, progress=False)
    assert weights() == after


@pytest.mark.slow
def test_cli_retrain_checks_and_eval_adapters(adapter_cli, tmp_path):
    assert_error(adapter_cli("adapters", "build-basis", "--retrain"), "--direction")
    assert_error(adapter_cli("adapters", "build-basis", "--direction", "8"), "outside 0..7")
    for args, needle in (
        (["--samples-per-prompt", "-1"], "samples-per-prompt"),
        (["--samples-per-prompt", "1"], "at least 2"),
        (["--samples-per-prompt", "2", "--sample-prompts", "0"], "sample-prompts"),
        (["--sample-prompts", "3"], "needs --samples-per-prompt"),
        (["--pairing", "closest"], "pairing must be one of"),
    ):
        assert_error(adapter_cli("adapters", "build-basis", *args), needle)
    short = ["--direction-prompts", "2", "--max-new-tokens", "3"]
    only = adapter_cli.json("eval", "adapters", "--users", "0", "--direction", "1", *short)
    assert [d["direction"] for d in only["directions"]] == [1] and only["users"] == []
    plot = tmp_path / "adapters.png"
    args = ["--users", "2", "--prompts", "2", "--shots", "2", "--plot", str(plot)]
    full = adapter_cli.json("eval", "adapters", *args, *short)
    assert len(full["directions"]) == 8 and len(full["users"]) == 2
    assert all(np.isfinite(u["gain"]) for u in full["users"])
    for row in full["directions"] + full["users"]:  # reward-hacking guards, both sides
        assert {f"{m}_{side}" for m in ("on_topic", "repeated", "words")
                for side in ("base", "adapter")} <= row.keys()  # fmt: skip
        assert all(np.isfinite(v) for k, v in row.items() if k.startswith(("on_topic", "words")))
    assert plot.read_bytes()[:4] == b"\x89PNG"
    bad = adapter_cli("eval", "adapters", "--users", "0", "--direction", "8", *short)
    assert_error(bad, "directions must be between 0 and 7")


def test_direction_pairs_rank_by_reward_and_skip_held_out(world):
    rewards = np.arange(len(world.texts), dtype=float)[:, None] * np.ones((1, 2))
    pairs = direction_pairs(world, rewards, 1, pairs_per_prompt=2)
    assert pairs and not any(is_held_out(p.prompt) for p in pairs)
    index = {t: i for i, t in enumerate(world.texts)}
    assert all(rewards[index[p.chosen], 1] > rewards[index[p.rejected], 1] for p in pairs)


def test_contrast_pairs_put_the_best_reply_over_another_prompts_best(world):
    rewards = np.arange(len(world.texts), dtype=float)[:, None] * np.ones((1, 2))
    plain = direction_pairs(world, rewards, 1, pairs_per_prompt=2)
    both = direction_pairs(world, rewards, 1, pairs_per_prompt=2, contrast=True)
    assert both[: len(plain)] == plain and both == direction_pairs(world, rewards, 1, 2, True)
    prompt_of = {t: world.prompts[i] for t, i in zip(world.texts, world.prompt_of)}
    train = {p for p in world.prompts if not is_held_out(p)}
    extra = both[len(plain) :]
    assert len(extra) == len(train) and {c.prompt for c in extra} == train
    for pair in extra:  # chosen: this prompt's best; rejected: a reply to another prompt
        assert prompt_of[pair.chosen] == pair.prompt != prompt_of[pair.rejected]
        ours = [t for t in world.texts if prompt_of[t] == pair.prompt]
        assert pair.chosen == max(ours, key=world.texts.index)


def test_nearest_pairing_picks_the_minimal_pair():
    from persona_sdk.simulation.world import RewardWorld

    source = "Water boils at one hundred degrees at sea level."
    texts = [source + " Think of a kettle singing.", "Bananas are yellow and sweet fruit.",
             source, "Stars shine at night far away."]  # fmt: skip
    prompts = [p for p in (f"Question {i}?" for i in range(40)) if not is_held_out(p)][:1]
    world = RewardWorld(prompts, texts, np.zeros(4, int), np.zeros((4, 1)), np.zeros((4, 1)))
    rewards = np.array([[3.0], [2.0], [1.0], [0.0]])
    (extreme,) = direction_pairs(world, rewards, 0, 1)
    (nearest,) = direction_pairs(world, rewards, 0, 1, pairing="nearest")
    assert extreme.rejected == texts[3]  # the worst reply, whatever it says
    assert (nearest.chosen, nearest.rejected) == (texts[0], source)  # differs by one sentence
    two = direction_pairs(world, rewards, 0, 2, pairing="nearest")
    assert len({pair.rejected for pair in two}) == 2  # a lower reply is used once
    assert all(pair.rejected in texts[2:] for pair in two)  # from the lower half
    with pytest.raises(InvalidInputError, match="pairing must be one of"):
        direction_pairs(world, rewards, 0, 1, pairing="closest")
    with pytest.raises(InvalidInputError, match="pairing must be one of"):
        BuildConfig(pairing="closest")


def test_user_adapter_is_the_exact_weighted_sum(tp):
    """Both the served update (routed through the wrapped layers) and the exported state
    equal Σ c_k ΔW_k for every target module."""
    user = tp.user("alice")
    add_pairs(user)
    slot = tp.adapters.activate("alice")
    coeffs = coefficients(tp.rewards.posterior("alice").mean)
    basis_adapters = tp.adapters.basis_adapters
    exported = basis_adapters.combine(coeffs)
    route = tp.adapters.server.route_for([slot], "cpu")
    checked = 0
    for stem in basis_adapters.a:
        expected = sum(c * basis_adapters.direction_delta(stem, k) for k, c in enumerate(coeffs))
        eye = torch.eye(expected.shape[1])[None]
        served = route.delta(module_name(stem), eye)[0].T  # ΔW x for x = every basis vector
        assert torch.allclose(served, expected, atol=1e-5), stem
        a, b = exported[f"{stem}.lora_A.weight"], exported[f"{stem}.lora_B.weight"]
        assert torch.allclose(basis_adapters.spec.scaling * b @ a, expected, atol=1e-5), stem
        checked += 1
    assert checked == len(basis_adapters.a) > 0


def test_weights_change_gives_a_new_adapter_and_cache_hits_otherwise(tp):
    user = tp.user("bob")
    add_pairs(user, PAIRS[:1])
    first = tp.adapters.activate("bob")
    assert tp.adapters.activate("bob") == first  # cached
    add_pairs(user, PAIRS[1:])
    assert tp.adapters.activate("bob") != first


def test_adapters_change_logits_only_inside_active(tp, tiny_host):
    add_pairs(tp.user("carol"))
    ids = torch.tensor([tiny_host.chat_ids([{"role": "user", "content": "hello there"}])])
    plain = tiny_host.model(input_ids=ids).logits
    name = tp.adapters.activate("carol")
    assert torch.equal(tiny_host.model(input_ids=ids).logits, plain)  # disabled outside
    with tp.adapters.server.active(name):
        adapted = tiny_host.model(input_ids=ids).logits
    assert not torch.allclose(adapted, plain)
    assert torch.equal(tiny_host.model(input_ids=ids).logits, plain)


def test_lru_bound_evicts_oldest_but_running_routes_keep_their_slot(tiny_model_dir, tp):
    from persona_sdk.adapters.serving import Factors, Slot

    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    basis_adapters = tp.adapters.basis_adapters
    own = [Factors.from_state(basis_adapters.combine(np.eye(8)[k]), 2.0) for k in range(3)]
    size = own[0].nbytes + 4 * own[0].width
    server = AdapterServer(host, max_bytes=2 * size)
    slots = [server.put(f"k{k}", Slot("u", f, torch.ones(f.width), owns_factors=True))
             for k, f in enumerate(own)]  # fmt: skip
    assert "k0" not in server and "k1" in server and "k2" in server and server.nbytes <= 2 * size
    ids = torch.tensor([[1, 2, 3]])
    plain = host.model(input_ids=ids).logits
    with server.active(slots[0]):  # evicted from the cache, still usable by its holder
        assert not torch.allclose(host.model(input_ids=ids).logits, plain)
    assert server.drop_user("u") == 2 and len(server) == 0
    generated = Slot("v", basis_adapters.factors, basis_adapters.scale(np.eye(8)[0]))
    server.put("g", generated)
    assert server.nbytes == 4 * basis_adapters.factors.width  # shared factors: only c_k


def test_export_loads_in_peft_with_matching_logits(tp, tiny_host, tiny_model_dir, tmp_path):
    from peft import PeftModel

    add_pairs(tp.user("dave"))
    report = tp.adapters.export("dave", tmp_path / "export")
    assert report["rank"] == 16 and report["max_rank"] is None
    ids = torch.tensor([tiny_host.chat_ids([{"role": "user", "content": "write a note"}])])
    with tp.adapters.server.active(tp.adapters.activate("dave")):
        ours = tiny_host.model(input_ids=ids).logits
    fresh = load_model(str(tiny_model_dir), device="cpu", shared=False).model
    theirs = PeftModel.from_pretrained(fresh, tmp_path / "export")(input_ids=ids).logits
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-4)  # float summation order


def test_truncation_is_exact_at_full_rank_and_reports_error(tp, tmp_path):
    add_pairs(tp.user("erin"))
    state = tp.adapters.resolve("erin").state
    scaling = tp.adapters.basis_adapters.spec.scaling
    _, full = truncate(state, scaling, 16)
    assert full["relative_error"] < 1e-6
    small, report = truncate(state, scaling, 2)
    assert (
        0 < report["relative_error"] < 1
        and report["worst_module_error"] >= report["relative_error"] - 1e-12
    )
    module = next(k for k in state if k.endswith("lora_A.weight"))[: -len(".lora_A.weight")]
    exact = scaling * state[f"{module}.lora_B.weight"] @ state[f"{module}.lora_A.weight"]
    approx = scaling * small[f"{module}.lora_B.weight"] @ small[f"{module}.lora_A.weight"]
    s = torch.linalg.svdvals(exact.double())
    best = float((s[2:] ** 2).sum().sqrt() / (s**2).sum().sqrt())
    assert float((exact - approx).norm() / exact.norm()) == pytest.approx(best, abs=1e-5)
    out = tp.adapters.export("erin", tmp_path / "small", max_rank=2)
    assert out["rank"] == 2 and out["relative_error"] > 0
    assert json.loads((tmp_path / "small" / "adapter_config.json").read_text())["r"] == 2


def test_export_bad_input(tp, tmp_path):
    add_pairs(tp.user("fay"))
    with pytest.raises(InvalidInputError, match="max-rank"):
        tp.adapters.export("fay", tmp_path / "x", max_rank=0)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        tp.adapters.export("fay", busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    tp.adapters.export("fay", busy, force=True)
    assert (busy / "adapter_config.json").is_file()


def test_adapters_for_another_model_or_basis_are_refused(tmp_path, embedder, built, tiny_model_dir):
    from tests.helpers import build_tiny_model

    other_dir = tmp_path / "other-model"
    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    other = build_tiny_model(host.model.config.vocab_size, seed=1)
    other.save_pretrained(other_dir)
    host.tokenizer.save_pretrained(other_dir)
    p = Persona.open(tmp_path / "d1", model=str(other_dir), embedder=embedder, adapters=built[0])
    with pytest.raises(AdapterError, match=r"another|not"):
        _ = p.adapters.basis_adapters
    p.close()
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(built[0], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["basis_id"] = "0" * 12
    (copy / MANIFEST).write_text(json.dumps(manifest))
    p = Persona.open(tmp_path / "d2", model=host, embedder=embedder, adapters=copy)
    with pytest.raises(AdapterError, match="basis"):
        _ = p.adapters.basis_adapters
    p.close()


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "delete", "manifest"])
def test_damaged_adapter_files_are_refused(tmp_path, tiny_host, embedder, built, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built[0], copy)
    weights = copy / "direction_3" / "adapter_model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "corrupt":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "delete":
        weights.unlink()
    else:
        (copy / MANIFEST).write_text("{not json")
    p = Persona.open(tmp_path / "d", model=tiny_host, embedder=embedder, adapters=copy)
    with pytest.raises(AdapterError, match=r"corrupt|missing|truncated"):
        _ = p.adapters.basis_adapters
    p.close()


@pytest.mark.slow
def test_finetune_needs_pairs_then_is_served_and_forgotten(tp):
    user = tp.user("gus")
    add_pairs(user)
    from persona_sdk.adapters.finetune import finetune_user

    with pytest.raises(NotEnoughDataError, match="at least 50"):
        finetune_user(tp.adapters, "gus", progress=False)

    before = tp.adapters.resolve("gus")
    result = finetune_user(
        tp.adapters,
        "gus",
        DPOConfig(steps=2, batch_pairs=2, learning_rate=0.05),
        min_pairs=3,
        progress=False,
    )
    assert result["pairs"] == 3 and result["steps"] == 2
    after = tp.adapters.resolve("gus")
    assert after.source == "finetuned" and before.source == "generated"
    assert any(not torch.equal(after.state[k], before.state[k]) for k in after.state)
    assert tp.adapters.info("gus")["finetune"]["pairs"] == 3
    folder = tp.data_dir / "user_adapters" / "gus"
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])  # damaged: the generated adapter serves
    fallback = tp.adapters.resolve("gus")
    assert fallback.source == "generated" and "corrupt" in fallback.note
    user.forget()
    assert not folder.exists()


# -- CLI -------------------------------------------------------------------------------------


def test_cli_show_and_export(adapter_cli, tmp_path):
    cli = adapter_cli
    for prompt, chosen, rejected in PAIRS:
        cli.ok("add-pair", "hana", prompt, "--chosen", chosen, "--rejected", rejected)
    shown = cli.json("adapters", "show", "hana")
    assert shown["source"] == "generated" and shown["rank"] == 16
    assert len(shown["coefficients"]) == 8 and shown["finetune_running"] is None
    assert "generated adapter, rank 16" in cli.ok("adapters", "show", "hana").stdout
    out = cli.json("adapters", "export", "hana", str(tmp_path / "exp"), "--max-rank", "4")
    assert out["rank"] == 4 and 0 <= out["relative_error"] < 1
    assert (
        "exported generated adapter"
        in cli.ok("adapters", "export", "hana", str(tmp_path / "exp"), "--force").stdout
    )
    assert_error(cli("adapters", "export", "hana", str(tmp_path / "exp")), "not empty")
    assert_error(
        cli("adapters", "export", "hana", str(tmp_path / "e2"), "--max-rank", "0"), "max-rank"
    )
    assert_error(cli("adapters", "finetune", "hana"), "at least 50")
    assert_error(cli("adapters", "show", "nobody"), "nobody")


@pytest.mark.slow
def test_cli_finetune(adapter_cli):
    cli = adapter_cli
    for prompt, chosen, rejected in PAIRS:
        cli.ok("add-pair", "hana", prompt, "--chosen", chosen, "--rejected", rejected)
    tuned = cli.json("adapters", "finetune", "hana", "--min-pairs", "3", "--steps", "1")
    assert tuned["pairs"] == 3
    assert cli.json("adapters", "show", "hana")["source"] == "finetuned"


# -- generation with user adapters -------------------------------------------------------------


def test_generate_uses_the_user_adapter_and_strength_zero_is_the_base(tp, tiny_host):
    from persona_sdk.decoding.loop import BatchGeneration, SamplingParams

    add_pairs(tp.user("ivy"))
    base = tp.generate("ivy", "Say something", strength=0.0, max_new_tokens=12)
    assert base.strength == 0.0
    ids = tiny_host.chat_ids(tp.prompt_for("ivy", "Say something"))
    plain = BatchGeneration(tiny_host, [ids], SamplingParams(max_new_tokens=12)).run()[0]
    assert base.text == plain.text.strip()
    full = tp.generate("ivy", "Say something", strength=1.0, max_new_tokens=12)
    assert full.strength == 1.0 and full.personalized
    with tp.adapters.server.active(tp.adapters.activate("ivy")):
        alone = BatchGeneration(tiny_host, [ids], SamplingParams(max_new_tokens=12)).run()[0]
    assert full.text == alone.text.strip()


def test_guided_logits_mix_base_and_adapter_in_one_forward(tp, tiny_host):
    from persona_sdk.adapters.guidance import RowPlan, guided_forward

    add_pairs(tp.user("jo"))
    name = tp.adapters.activate("jo")
    ids = torch.tensor([tiny_host.chat_ids([{"role": "user", "content": "hi"}])] * 3)
    mask = torch.ones_like(ids)
    pos = torch.arange(ids.shape[1])[None].repeat(3, 1)
    plans = [RowPlan(None, 0.0), RowPlan(name, 1.0), RowPlan(name, 2.5)]
    forward = guided_forward(tiny_host, tp.adapters.server, plans)
    assert forward.expanded_rows == 4  # base, adapter, base + adapter
    mixed, _ = forward(ids, mask, pos, None)
    base = tiny_host.model(input_ids=ids[:1]).logits[:, -1].float()
    with tp.adapters.server.active(name):
        adapted = tiny_host.model(input_ids=ids[:1]).logits[:, -1].float()
    assert torch.allclose(mixed[0], base[0], atol=1e-5)
    assert torch.allclose(mixed[1], adapted[0], atol=1e-5)
    assert torch.allclose(mixed[2], base[0] + 2.5 * (adapted[0] - base[0]), atol=1e-4)


def test_batch_mixes_users_and_strengths(tp):
    add_pairs(tp.user("kim"))
    add_pairs(tp.user("lee"), PAIRS[:1])
    replies = tp.generate_batch([("kim", "hello"), ("lee", "hello"), ("new", "hello")],
                                strength=[1.0, 0.5, 1.0], max_new_tokens=6)  # fmt: skip
    assert [r.strength for r in replies] == [1.0, 0.5, 1.0]
    assert replies[2].personalized is False  # no data: population default adapter
    for user, reply in zip(("kim", "lee", "new"), replies):  # one embedding call, own weights
        expected = tp.rewards.scores(user, "hello", [reply.text])[0]
        assert reply.reward == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert replies[0].reward != replies[1].reward
    with pytest.raises(InvalidInputError, match="one per request"):
        tp.generate_batch([("kim", "hello")], strength=[1.0, 1.0])
