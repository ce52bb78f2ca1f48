# A batch through genq: upload a JSONL file of requests, start the batch, read the answers.
# OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=genq_... python openai_batch.py

import json
import time

from openai import OpenAI

client = OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
questions = {"colour": "Name a colour.", "fruit": "Name a fruit."}
lines = [
    {
        "custom_id": name,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gemma3-270m",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 32,
        },
    }
    for name, text in questions.items()
]
upload = client.files.create(
    file=("questions.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()),
    purpose="batch",
)
batch = client.batches.create(
    input_file_id=upload.id,
    endpoint="/v1/chat/completions",
    completion_window="24h",
    metadata={"genq_priority": "3"},  # 0-9, 9 most urgent; default 2
)
while batch.status not in ("completed", "failed", "expired", "cancelled"):
    time.sleep(1)
    batch = client.batches.retrieve(batch.id)
counts = batch.request_counts
print(f"{batch.status}: {counts.completed if counts else 0} of {len(lines)} answered")
if batch.output_file_id:
    for line in client.files.content(batch.output_file_id).text.splitlines():
        answer = json.loads(line)
        print(answer["custom_id"], answer["response"]["body"]["choices"][0]["message"]["content"])
