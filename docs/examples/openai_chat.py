# OpenAI SDK code, run through genq's queue: only the base URL and the key change.
# OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=genq_... python openai_chat.py

from openai import OpenAI

client = OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
stream = client.chat.completions.create(
    model="gemma3-270m",
    messages=[{"role": "user", "content": "Hello!"}],
    max_tokens=64,
    stream=True,
    stream_options={"include_usage": True},
    extra_headers={"X-Genq-Priority": "9"},  # 0-9, 9 most urgent; default 7
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    elif chunk.usage:
        print(f"\n{chunk.usage.completion_tokens} tokens")
