"""Preference memory: the SQLite store (source of truth), per-user FAISS indexes, retrieval."""

from persona_sdk.memory.index import IndexManager, UserIndex
from persona_sdk.memory.retrieval import RetrievedRule, Retriever
from persona_sdk.memory.store import Memory, MemoryStore

__all__ = ["IndexManager", "Memory", "MemoryStore", "RetrievedRule", "Retriever", "UserIndex"]
