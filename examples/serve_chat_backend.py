"""A chat app's backend on `persona serve`: one app key, one user id per end-user.

Run ``python examples/serve_chat_backend.py``. It starts ``persona serve`` on 127.0.0.1
(a temporary data dir, the embedded model), creates an app key, then plays a backend that
(1) stores a user's stated preference, (2) answers them through the standard ``openai``
client, naming the user in the ``X-Persona-User`` header, and (3) turns the user's edit of
a reply into feedback, which shapes the next reply, not the one in flight.
"""

from __future__ import annotations

import tempfile

import httpx
import openai

from persona_sdk.serving.keys import KeyStore
from persona_sdk.serving.launch import spawn

with tempfile.TemporaryDirectory() as data:
    key, _ = KeyStore(data).create("app", "chat backend")  # `persona keys create app`
    server, url = spawn(data, serve_options=["--threads", "1"])
    try:
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        chat = openai.OpenAI(base_url=url + "/v1", api_key=key)

        def reply(user: str, text: str) -> str:
            out = chat.chat.completions.with_raw_response.create(
                model="persona", messages=[{"role": "user", "content": text}], max_tokens=60,
                extra_headers={"X-Persona-User": user})  # fmt: skip
            body = out.parse()
            print(f"[{user}] rules used: {out.headers['x-persona-rules'] or 'none'}, "
                  f"strength {out.headers['x-persona-strength']}")  # fmt: skip
            return body.choices[0].message.content

        http.post("/v1/users/maya/rules", json={"text": "Answer in one sentence."})
        question = "How do I make good coffee at home?"
        first = reply("maya", question)
        print("first reply:", first)
        words = first.split()  # maya cuts the reply in half
        edited = " ".join(words[: max(3, len(words) // 2)]).rstrip(",.;:") + "."
        edit = {"prompt": question, "response": first, "edited": edited}
        learned = http.post("/v1/users/maya/edits", json=edit).raise_for_status().json()
        print("the edit taught:", [r["text"] for r in learned["inferred_rules"]])
        print("next reply:", reply("maya", "How do I brew tea?"))
        profile = http.get("/v1/users/maya/profile").json()
        print("maya's reward weights:", profile["reward"]["weights"])
        http.delete("/v1/users/maya")  # right to be forgotten
    finally:
        server.terminate()
        server.wait(60)
