"""The :class:`Persona` entry point: one data directory, one shared model, many users."""

from __future__ import annotations

import atexit
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from persona_sdk.adapters.guidance import RowPlan
from persona_sdk.adapters.manager import UserAdapters
from persona_sdk.adapters.serving import AdapterServer, server_for
from persona_sdk.config import GenerationConfig, MemoryConfig, RetrievalConfig, default_data_dir
from persona_sdk.constraints.select import EnforcedRule
from persona_sdk.decoding.embedder import Embedder, load_embedder
from persona_sdk.decoding.loop import SamplingParams, sampling_params
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
from persona_sdk.replies import Decode, Request, build_replies
from persona_sdk.reply import Reply, ReplyStream
from persona_sdk.reward.basis import RewardBasis
from persona_sdk.reward.features import Featurizer
from persona_sdk.reward.rewards import Rewards
from persona_sdk.user import User
from persona_sdk.validation import validate_number, validate_path, validate_user_id

Prompt = str | Sequence[Message]


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
        store: str | None = None,
    ):
        self.data_dir = (
            default_data_dir() if data_dir is None else validate_path(data_dir, "data dir")
        )
        self.store = MemoryStore(self.data_dir, url=store)
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
        ``persona adapters build-basis``, else the set shipped for the embedded model), and
        the ``store``: a ``postgresql://…`` URL to keep memories in PostgreSQL (default:
        ``$PERSONA_STORE``, else ``persona.db`` in the data dir, SQLite). The data dir
        holds the derived files (indexes, adapters) on either store.
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
        return run_doctor(self.memory, repair=repair, extra=[self.rewards.basis_check])

    # -- generation ----------------------------------------------------------------------

    def default_strength(self, user_id: str) -> float:
        """The guidance strength ``user_id`` gets when a request names none: 0 without
        basis adapters; else 1 with ``GenerationConfig.population_default``; else the share
        of the user's posterior their own pairs determine (0 with no pairs, towards 1),
        divided by 1 + the contrasts where the probed reward contradicts what the user
        revealed unanimously (their profile's flags: low confidence in the model)."""
        if not self.adapters.available():
            return 0.0
        if self.generation_config.population_default:
            return 1.0
        user_id = validate_user_id(user_id)
        evidence = self.rewards.evidence(user_id)
        if evidence == 0.0:
            return 0.0
        return round(evidence / (1 + self.rewards.contradiction_count(user_id)), 4)

    def _request(
        self, user_id: str, prompt: Prompt, params: SamplingParams, strength: float | None = None
    ) -> Request:
        user_id = validate_user_id(user_id)
        if strength is None:
            strength = self.default_strength(user_id)
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
        enforced = self.enforced_rules(user_id, rules)
        return Request(user_id, rules, token_ids, retrieve_ms, query, plan, has_pairs, enforced)

    def enforced_rules(
        self, user_id: str, retrieved: Sequence[RetrievedRule]
    ) -> list[EnforcedRule]:
        """The rules a request enforces as constraints (see :meth:`User.enforced_rules`)."""
        return self.user(user_id).enforced_rules(retrieved)

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Unit embeddings, from the featurizer's cache when it has one (the replies and
        requests it has just featurized are there)."""
        cache = getattr(self.rewards.featurizer, "cache", None)
        return cache.encode(texts) if cache is not None else self.embedder.encode(texts)

    def _decode(self, requests: Sequence[Request], params: SamplingParams, best_of: int) -> Decode:
        return Decode(self.host, self.adapter_server, requests, params, best_of,
                      self.generation_config)  # fmt: skip

    def _replies(self, decode: Decode, started: float) -> list[Reply]:
        return build_replies(decode, self.rewards, self._encode, self.host.name,
                             self.generation_config, started)  # fmt: skip

    def generate(
        self,
        user_id: str,
        prompt: Prompt,
        *,
        strength: float | None = None,
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
        adapter alone, above 1 pushes harder); ``None`` is :meth:`default_strength`, which
        grows with the evidence of the user's own pairs (0 with none). The guard
        (``GenerationConfig.guard``) keeps guided tokens within a KL budget of the base and
        hands a reply that starts to break back to the base (``reply.guard``). ``best_of=N``
        samples N candidates in one batch and returns the best sound one by the user's
        reward, fluency and relevance, with every term in ``reply.candidates``. With
        ``stream=True`` the result is a :class:`ReplyStream` of text chunks.
        """
        started = time.perf_counter()
        if stream and best_of != 1:
            raise InvalidInputError("best_of > 1 picks a reply at the end; it cannot stream")
        params = sampling_params(self.generation_config, self.host.max_context, best_of,
                                 max_new_tokens, temperature, top_p, seed, stop)  # fmt: skip
        request = self._request(user_id, prompt, params, strength)
        decode = self._decode([request], params, best_of)
        if not stream:
            decode.gen.run()
            return self._replies(decode, started)[0]
        chunks = (deltas[0] for deltas in decode.gen if deltas[0])
        finish = lambda: self._replies(decode, started)[0]  # noqa: E731
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
        strength: float | Sequence[float | None] | None = None,
        best_of: int = 1,
    ) -> list[Reply]:
        """Serve several ``(user_id, prompt)`` requests in one batched decode; each row has
        its own user adapter and ``strength`` (one value, or one per request; ``None``:
        each user's :meth:`default_strength`). With
        ``best_of=N`` every request gets N candidates in the same batch, reranked by its
        user's reward."""
        if not requests:
            raise InvalidInputError("generate_batch needs at least one (user_id, prompt) request")
        scalar = strength is None or np.isscalar(strength)
        strengths = [strength] * len(requests) if scalar else list(strength)
        if len(strengths) != len(requests):
            raise InvalidInputError("give one strength, or one per request")
        started = time.perf_counter()
        params = sampling_params(self.generation_config, self.host.max_context, best_of,
                                 max_new_tokens, temperature, top_p, seed, stop)  # fmt: skip
        prepared = [self._request(user_id, prompt, params, a)
                    for (user_id, prompt), a in zip(requests, strengths)]  # fmt: skip
        decode = self._decode(prepared, params, best_of)
        decode.gen.run()
        return self._replies(decode, started)

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
