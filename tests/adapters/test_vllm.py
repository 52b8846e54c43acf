"""The vLLM contract: the exact user adapter under its versioned name, loadable by peft
with the routed adapter's logits at strength 1, and the `vllm serve` flags for it."""

from __future__ import annotations

import json

import pytest
import torch

from persona_sdk import AdapterError, InvalidInputError
from persona_sdk.adapters import vllm
from persona_sdk.decoding.models import load_model
from tests.helpers import PAIRS, add_pairs, assert_error

PROMPT = [{"role": "user", "content": "write a note about the budget"}]


def max_logit_gap(persona, user_id: str, folder, base) -> float:
    """max |logits| difference between persona-sdk's routed adapter (strength 1) and the
    exported folder loaded by ``PeftModel.from_pretrained`` on the plain model ``base``."""
    from peft import PeftModel

    host = persona.host
    ids = torch.tensor([host.chat_ids(PROMPT)])
    with torch.inference_mode():
        with persona.adapters.server.active(persona.adapters.activate(user_id)):
            ours = host.model(input_ids=ids).logits.float()
        theirs = PeftModel.from_pretrained(base, folder)(input_ids=ids).logits.float()
        plain = host.model(input_ids=ids).logits.float()
    assert (ours - plain).abs().max() > 1e-3  # the adapter does change the logits
    return float((ours - theirs).abs().max())


def test_vllm_export_is_exact_and_loads_in_peft(tp, tiny_model_dir, tmp_path):
    add_pairs(tp.user("dave"))
    out = vllm.export_vllm(tp.adapters, "dave", tmp_path / "loras")
    version = tp.adapters.version("dave")
    assert out["name"] == f"persona-dave-v{version}" == vllm.adapter_name("dave", version)
    assert out["rank"] == 16 and out["max_lora_rank"] == 16 and out["written"]  # K·r = 8·2
    config = json.loads((tmp_path / "loras" / out["name"] / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32  # scaling alpha/r = 2 kept
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    fresh = load_model(str(tiny_model_dir), device="cpu", shared=False).model
    gap = max_logit_gap(tp, "dave", out["path"], fresh)
    print(f"tiny model: max |logits difference| exported vs routed = {gap:.2e}")
    assert gap < 1e-4
    again = vllm.export_vllm(tp.adapters, "dave", tmp_path / "loras")
    assert not again["written"] and again["sha256"] == out["sha256"]


def test_the_version_changes_with_the_adapter_only(tp, tmp_path):
    user = tp.user("eve")
    add_pairs(user, PAIRS[:1])
    first = tp.adapters.version("eve")
    user.add_rule("Answer in one sentence.")
    assert tp.adapters.version("eve") == first  # a rule does not move the weights
    vllm.export_vllm(tp.adapters, "eve", tmp_path)
    add_pairs(user, PAIRS[1:])
    second = tp.adapters.version("eve")
    assert second != first
    with pytest.raises(InvalidInputError, match=f"persona-eve-v{second} is not exported"):
        vllm.current_modules(tp.adapters, tmp_path, ["eve"])
    vllm.export_vllm(tp.adapters, "eve", tmp_path)
    assert [m["version"] for m in vllm.current_modules(tp.adapters, tmp_path, [])] == [second]
    assert vllm.prune(tmp_path, "eve", second) == [f"persona-eve-v{first}"]
    assert [m["version"] for m in vllm.exported(tmp_path)] == [second]


def test_names_ranks_and_args():
    assert vllm.parse_adapter_name("persona-ann-v0a1b") == ("ann", "0a1b")
    assert vllm.parse_adapter_name("persona-x-v1-v2f") == ("x-v1", "2f")
    for bad in ("persona", "persona-ann", "ann-v1", "persona-ann-vXYZ", "persona--v1"):
        assert vllm.parse_adapter_name(bad) is None
    assert [vllm.vllm_rank(r) for r in (1, 8, 9, 64, 65, 300, 321)] == [8, 8, 16, 64, 128, 320, 512]
    with pytest.raises(AdapterError, match="512"):
        vllm.vllm_rank(513)
    modules = [{"name": "persona-a-v1", "path": "/x/a", "rank": 24, "base_model": "m"},
               {"name": "persona-b-v2", "path": "/x/b", "rank": 16, "base_model": "m"}]  # fmt: skip
    args = vllm.vllm_args(modules)
    assert args["max_lora_rank"] == 32 and args["rank_rounded_up"] and args["max_loras"] == 2
    assert args["command"] == ("vllm serve m --enable-lora --max-lora-rank 32 --max-loras 2 "
                               "--lora-modules persona-a-v1=/x/a persona-b-v2=/x/b")  # fmt: skip
    with pytest.raises(InvalidInputError, match="several base models"):
        vllm.vllm_args([*modules, {**modules[0], "base_model": "other"}])
    with pytest.raises(InvalidInputError, match="no exported adapters"):
        vllm.vllm_args([])


def test_cli_export_for_vllm_and_vllm_args(adapter_cli, tmp_path):
    cli, root = adapter_cli, tmp_path / "loras"
    for user in ("hana", "ivo"):
        for prompt, chosen, rejected in PAIRS:
            cli.ok("add-pair", user, prompt, "--chosen", chosen, "--rejected", rejected)
    out = cli.json("adapters", "export", "hana", "--for", "vllm", "--out", str(root))
    assert out["name"].startswith("persona-hana-v") and out["rank"] == 16
    line = cli.ok("adapters", "export", "ivo", "--for", "vllm", "--out", str(root)).stdout
    assert "exported persona-ivo-v" in line and "--max-lora-rank 16" in line
    args = cli.json("adapters", "vllm-args", "--dir", str(root))
    assert sorted(args["lora_modules"]) == sorted([out["name"], args_name(args, "ivo")])
    assert args["max_lora_rank"] == 16 and not args["rank_rounded_up"]
    text = cli.ok("adapters", "vllm-args", "hana", "--dir", str(root), "--max-loras", "4").stdout
    assert text.startswith("vllm serve ") and "--enable-lora" in text and "--max-loras 4" in text
    assert f"{out['name']}={out['path']}" in text.replace("\n", "")
    assert_error(cli("adapters", "export", "hana", "--for", "vllm", "--out", str(root),
                     "--max-rank", "4"), "exact")  # fmt: skip
    assert_error(cli("adapters", "export", "hana", "--for", "onnx", str(root)), "--for")
    assert_error(cli("adapters", "export", "hana"), "output folder")
    assert_error(cli("adapters", "vllm-args", "nobody", "--dir", str(root)), "nobody")


def args_name(args: dict, user: str) -> str:
    return next(n for n in args["lora_modules"] if n.startswith(f"persona-{user}-v"))


@pytest.mark.integration
def test_vllm_export_on_the_embedded_model(tmp_path, real_embedder):
    """The shipped basis adapters of the embedded SmolLM2: exported exactly (rank 64)."""
    from persona_sdk import Persona

    with Persona.open(tmp_path / "data", embedder=real_embedder, device="cpu") as persona:
        add_pairs(persona.user("ana"))
        out = vllm.export_vllm(persona.adapters, "ana", tmp_path / "loras")
        assert out["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert out["rank"] == 64 and out["max_lora_rank"] == 64
        fresh = load_model(None, device="cpu", shared=False).model
        gap = max_logit_gap(persona, "ana", out["path"], fresh)
    print(f"embedded model: max |logits difference| exported vs routed = {gap:.2e}")
    assert gap < 1e-4
