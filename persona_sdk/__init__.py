"""persona-sdk: one shared LLM that answers every end-user the way that user likes.

Start with :class:`Persona`::

    from persona_sdk import Persona

    p = Persona.open("./persona-data")
    p.user("alice").add_rule("Answer in at most two sentences.")
    print(p.generate("alice", "Why is the sky blue?").text)
"""

from persona_sdk.config import GenerationConfig, RetrievalConfig
from persona_sdk.errors import (
    AdapterError,
    BasisError,
    DataDirError,
    FeaturizerMismatchError,
    InvalidInputError,
    InvalidUserIdError,
    MemoryNotFoundError,
    ModelLoadError,
    NotEnoughDataError,
    PersonaError,
    PopulationDataError,
    StoreError,
    UnknownUserError,
)
from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.memory.store import Memory
from persona_sdk.persona import Persona
from persona_sdk.reply import Reply, ReplyStream
from persona_sdk.reward.basis import RewardBasis
from persona_sdk.reward.rewards import Question, RewardProfile
from persona_sdk.user import Explanation, User

__version__ = "0.1.0"

__all__ = [
    "AdapterError",
    "BasisError",
    "DataDirError",
    "Explanation",
    "FeaturizerMismatchError",
    "GenerationConfig",
    "InvalidInputError",
    "InvalidUserIdError",
    "Memory",
    "MemoryNotFoundError",
    "ModelLoadError",
    "NotEnoughDataError",
    "Persona",
    "PersonaError",
    "PopulationDataError",
    "Question",
    "Reply",
    "ReplyStream",
    "RetrievalConfig",
    "RetrievedRule",
    "RewardBasis",
    "RewardProfile",
    "StoreError",
    "UnknownUserError",
    "User",
    "__version__",
]
