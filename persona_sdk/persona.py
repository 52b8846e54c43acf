"""The :class:`Persona` entry point: one data directory, one shared model, many users."""

from __future__ import annotations

import atexit
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from persona_sdk.adapters.guidance import RowPlan, guided_forward
from persona_sdk.adapters.manager import UserAdapters
from persona_sdk.adapters.serving import AdapterServer, server_for
from persona_sdk.config import GenerationConfig, MemoryConfig, RetrievalConfig, default_data_dir
from persona_sdk.decoding.embedder import Embedder, load_embedder
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams, sampling_params
from persona_sdk.decoding.models import Message, ModelHost, load_model
from persona_sdk.decoding.prompting import build_messages, normalise_messages, retrieval_query
from persona_sdk.errors import InvalidInputError, StoreError
from persona_sdk.memory.doctor import DoctorReport, run_doctor
from persona_sdk.memory.index import IndexManager
from persona_sdk.memory.inference import infer_preference_phrase
from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.memory.service import MemoryService
from persona_sdk.memory.store import MemoryStore
from persona_sdk.memory.transfer import export_lines, import_records, parse_lines
from persona_sdk.reply import Reply, ReplyStream
from persona_sdk.reward.basis import RewardBasis
from persona_sdk.reward.features import Featurizer
from persona_sdk.reward.rewards import Rewards
from persona_sdk.user import User
from persona_sdk.validation import validate_number, validate_user_id

Prompt = str | Sequence[Message]


@dataclass
class _Request:
    """A validated request, with its rules retrieved and its prompt tokenised."""

    user_id: str
    rules: list[RetrievedRule]
    token_ids: list[int]
    retrieve_ms: float
    query: str = ""  # the latest user turn: what replies are scored against
    plan: RowPlan = field(default_factory=lambda: RowPlan(None, 0.0))
    has_pairs: bool = False


class Persona:
    """Personalized generation over one shared base model.

    Use :meth:`open`. The model and embedder load lazily on first use and are shared by
    every ``Persona`` in the process that asks for the same ones.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        model: str | ModelHost | None = None,
        embedder: str | Embedder | None = None,
        device: str | None = None,
        dtype: str | None = None,
        retrieval: RetrievalConfig | None = None,
        generation: GenerationConfig | None = None,
        memory: MemoryConfig | None = None,
        basis: RewardBasis | str | Path | None = None,
        featurizer: Featurizer | None = None,
        adapters: str | Path | None = None,
    ):
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        self.store = MemoryStore(self.data_dir)
        self.retrieval_config = retrieval or RetrievalConfig()
        self.generation_config = generation or GenerationConfig()
        self.memory_config = memory or MemoryConfig()
        self._model_spec, self._device, self._dtype = model, device, dtype
        self._host = model if isinstance(model, ModelHost) else None
        self._embedder_spec = embedder
        self._embedder = embedder if isinstance(embedder, Embedder) else None
        self._embedder_checked = False
        self.memory = MemoryService(
            self.store, lambda: self.embedder, self.memory_config, self.retrieval_config,
            self._infer_phrase,
        )  # fmt: skip
        self.rewards = Rewards(self.store, lambda: self.embedder, self.data_dir, basis, featurizer)
        self.adapters = UserAdapters(
            lambda: self.host, self.rewards, self.store, self.data_dir, adapters,
            self.generation_config.system_prompt,
        )  # fmt: skip
        self.memory.on_forget(self.rewards.forget)
        self.memory.on_forget(self.adapters.forget)
        atexit.register(self.close)

    @classmethod
    def open(cls, data_dir: str | Path | None = None, **kwargs) -> Persona:
        """Open (or create) a data directory: ``$PERSONA_HOME`` or ``~/.persona`` by default.

        Keyword arguments: ``model`` (HF id, local path, or a loaded ``ModelHost``),
        ``embedder`` (sentence-transformers id or path), ``device``, ``dtype``, the
        ``retrieval``, ``generation`` and ``memory`` configs, and the reward ``basis`` (a
        file or :class:`RewardBasis`; default: the data dir's ``basis.npz`` from
        ``persona basis fit``, else the shipped one) with its ``featurizer``, and the
        basis ``adapters`` folder (default: the data dir's ``basis_adapters`` from
        ``persona adapters build-basis``, else the set shipped for the embedded model).
        """
        return cls(data_dir, **kwargs)

    def __enter__(self) -> Persona:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Save changed indexes and close the database. Safe to call twice."""
        atexit.unregister(self.close)
        if self.store.closed:
            return
        self.memory.close()
        self.store.close()

    # -- shared components ---------------------------------------------------------------

    @property
    def host(self) -> ModelHost:
        """The base model, loaded on first use."""
        if self._host is None:
            spec = None if self._model_spec is None else str(self._model_spec)
            self._host = load_model(spec, self._device, self._dtype)
        return self._host

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use and checked against the one the data was built with."""
        if self._embedder is None:
            spec = None if self._embedder_spec is None else str(self._embedder_spec)
            self._embedder = load_embedder(spec, self._device)
        if not self._embedder_checked:  # once per Persona, not on every encode
            stored = self.store.get_meta("embedder")
            if stored is None:
                self.store.set_meta("embedder", self._embedder.identity)
            elif stored != self._embedder.identity:
                raise StoreError(
                    f"{self.data_dir} was built with embedder {stored}, not "
                    f"{self._embedder.identity}; open it with the same embedder"
                )
            self._embedder_checked = True
        return self._embedder

    @property
    def indexes(self) -> IndexManager:
        """Every user's derived FAISS index."""
        return self.memory.indexes

    @property
    def adapter_server(self) -> AdapterServer:
        """Routes each row of a forward to its user's adapter (one per model host)."""
        return server_for(self.host)

    # -- users ---------------------------------------------------------------------------

    def user(self, user_id: str) -> User:
        """A handle on one user; nothing is stored until the user adds something."""
        return User(validate_user_id(user_id), self.memory, self.rewards)

    def users(self) -> list[str]:
        """Every user with stored data, sorted."""
        return self.store.users()

    def _infer_phrase(self, response: str, edited: str) -> str | None:
        """One short LLM-written preference phrase for an edit, when enabled."""
        if not self.memory_config.infer_with_llm:
            return None
        spec = self.memory_config.inference_model
        host = self.host if spec is None else load_model(spec, self._device, self._dtype)
        return infer_preference_phrase(host, response, edited)

    def export_user(self, user_id: str) -> Iterator[str]:
        """One user as JSON lines (a header, then each memory); see :meth:`import_user`."""
        return export_lines(self.store, validate_user_id(user_id))

    def import_user(self, lines: Iterable[str | bytes], user_id: str | None = None) -> User:
        """Create a user from an export; ``user_id`` renames it. All or nothing."""
        exported_id, records = parse_lines(lines)
        target = validate_user_id(user_id) if user_id is not None else exported_id
        import_records(self.memory, target, records)
        return self.user(target)

    def doctor(self, repair: bool = True) -> DoctorReport:
        """Check the store and its derived indexes; rebuild whatever is missing or stale."""
        return run_doctor(self.memory, repair=repair)

    # -- generation ----------------------------------------------------------------------

    def _request(
        self, user_id: str, prompt: Prompt, params: SamplingParams, strength: float = 0.0
    ) -> _Request:
        user_id = validate_user_id(user_id)
        strength = validate_number(
            strength, "strength", low=0.0, high=self.generation_config.max_strength
        )
        start = time.perf_counter()
        full, rules, query = self._personalized_messages(user_id, prompt)
        retrieve_ms = (time.perf_counter() - start) * 1000
        token_ids = self.host.chat_ids(full)
        if len(token_ids) + params.max_new_tokens > self.host.max_context:
            raise InvalidInputError(
                f"prompt ({len(token_ids)} tokens) plus max_new_tokens "
                f"({params.max_new_tokens}) exceeds the model's {self.host.max_context}"
            )
        plan = RowPlan(self.adapters.serving_slot(user_id, strength), strength)
        if plan.adapter is None:
            plan = RowPlan(None, 0.0)  # no basis adapters for this model: rules only
        has_pairs = plan.adapter is not None and self.rewards.profile(user_id).personalized
        return _Request(user_id, rules, token_ids, retrieve_ms, query, plan, has_pairs)

    def _replies(
        self, requests: Sequence[_Request], gen: BatchGeneration, best_of: int, started: float
    ) -> list[Reply]:
        """One reply per request from its ``best_of`` rows of ``gen``, ranked by the user's
        reward; every row is featurized in one embedding call."""
        score_start = time.perf_counter()
        texts = [row.text.strip() for row in gen.rows]
        phi = self.rewards.features([r.query for r in requests for _ in range(best_of)], texts)
        rewards = [self.rewards.score_features(r.user_id, phi[i * best_of : (i + 1) * best_of])
                   for i, r in enumerate(requests)]  # fmt: skip
        scored_ms = (time.perf_counter() - score_start) * 1000
        return [self._reply(r, gen, i * best_of, texts, rewards[i], scored_ms, started)
                for i, r in enumerate(requests)]  # fmt: skip

    def _reply(
        self, request: _Request, gen: BatchGeneration, first: int, texts: list[str],
        rewards: np.ndarray, reward_ms: float, started: float,
    ) -> Reply:  # fmt: skip
        """The request's reply from rows ``first…first+len(rewards)``: the best by reward."""
        order = np.argsort(-rewards, kind="stable")
        mine = texts[first : first + len(rewards)]
        state = gen.rows[first + order[0]]
        timings = {
            "retrieve": request.retrieve_ms,
            "ttft": gen.timings.get("ttft", 0.0) * 1000,
            "generate": gen.timings.get("total", 0.0) * 1000,
            "reward": reward_ms,
            "total": (time.perf_counter() - started) * 1000,
        }
        candidates = []
        if len(rewards) > 1:
            candidates = [{"text": mine[i], "reward": float(rewards[i])} for i in order]
        return Reply(
            text=mine[order[0]],
            user_id=request.user_id,
            used_rules=request.rules,
            strength=request.plan.strength,
            personalized=bool(request.rules) or request.has_pairs,
            model=self.host.name,
            finish_reason=state.finish_reason or "stop",
            tokens=len(state.tokens),
            reward=float(rewards[order[0]]),
            candidates=candidates,
            timings=timings,
        )

    def generate(
        self,
        user_id: str,
        prompt: Prompt,
        *,
        strength: float = 1.0,
        best_of: int = 1,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        stream: bool = False,
    ) -> Reply | ReplyStream:
        """Reply to ``prompt`` (a string or chat messages) the way ``user_id`` likes.

        The user's rules nearest to the request go into the system prompt. ``strength``
        scales decoding-time guidance by the user's adapter (0 = base model, 1 = the
        adapter alone, above 1 pushes harder). ``best_of=N`` samples N candidates in one
        batch and returns the one the user's reward ranks first, with every candidate's
        reward in ``reply.candidates``. With ``stream=True`` the result is a
        :class:`ReplyStream` of text chunks.
        """
        started = time.perf_counter()
        if stream and best_of != 1:
            raise InvalidInputError("best_of > 1 picks a reply at the end; it cannot stream")
        params = sampling_params(self.generation_config, self.host.max_context, best_of, max_new_tokens,
                                 temperature, top_p, seed, stop)  # fmt: skip
        request = self._request(user_id, prompt, params, strength)
        forward = guided_forward(self.host, self.adapter_server, [request.plan] * best_of)
        gen = BatchGeneration(self.host, [request.token_ids] * best_of, params, forward)
        if not stream:
            gen.run()
            return self._replies([request], gen, best_of, started)[0]
        chunks = (deltas[0] for deltas in gen if deltas[0])
        finish = lambda: self._replies([request], gen, best_of, started)[0]  # noqa: E731
        return ReplyStream(chunks, request.rules, finish)

    def generate_batch(
        self,
        requests: Sequence[tuple[str, Prompt]],
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        strength: float | Sequence[float] = 1.0,
        best_of: int = 1,
    ) -> list[Reply]:
        """Serve several ``(user_id, prompt)`` requests in one batched decode; each row has
        its own user adapter and ``strength`` (one value, or one per request). With
        ``best_of=N`` every request gets N candidates in the same batch, reranked by its
        user's reward."""
        if not requests:
            raise InvalidInputError("generate_batch needs at least one (user_id, prompt) request")
        strengths = [strength] * len(requests) if np.isscalar(strength) else list(strength)
        if len(strengths) != len(requests):
            raise InvalidInputError("give one strength, or one per request")
        started = time.perf_counter()
        params = sampling_params(self.generation_config, self.host.max_context, best_of, max_new_tokens,
                                 temperature, top_p, seed, stop)  # fmt: skip
        prepared = [self._request(user_id, prompt, params, a)
                    for (user_id, prompt), a in zip(requests, strengths)]  # fmt: skip
        plans = [r.plan for r in prepared for _ in range(best_of)]
        forward = guided_forward(self.host, self.adapter_server, plans)
        prompts = [r.token_ids for r in prepared for _ in range(best_of)]
        gen = BatchGeneration(self.host, prompts, params, forward)
        gen.run()
        return self._replies(prepared, gen, best_of, started)

    def prompt_for(self, user_id: str, prompt: Prompt) -> list[Message]:
        """The exact messages the model would see for this request (for debugging)."""
        return self._personalized_messages(validate_user_id(user_id), prompt)[0]

    def _personalized_messages(
        self, user_id: str, prompt: Prompt
    ) -> tuple[list[Message], list[RetrievedRule], str]:
        """The request's messages with the user's retrieved rules in the system prompt,
        the rules, and the query they were retrieved for."""
        messages = normalise_messages(prompt)
        query = retrieval_query(messages)
        rules = self.memory.retrieve(user_id, query)
        return build_messages(messages, rules, self.generation_config.system_prompt), rules, query
