"""LoRA adapters per reward direction and their exact per-user combination (design §3).

Empty in this release: user adapters arrive with the adapter-generation milestone. Until
then :meth:`persona_sdk.Persona.generate` applies strength 0 and reports it.
"""
