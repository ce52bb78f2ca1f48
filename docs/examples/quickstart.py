# Submit a job, stream its tokens, wait for its record. Run it against `make up`.

from genq.settings import Settings
from producers import GenqClient

with GenqClient(Settings()) as client:
    job = client.submit(
        {
            "messages": [{"role": "user", "content": "Hello!"}],
            "priority": 9,
            "max_tokens": 64,
        }
    )
    for chunk in client.stream(job.id):  # tokens as they are generated
        print(chunk.delta, end="", flush=True)
    record = client.wait(job.id, timeout=60)  # the final record
    print()
    print(record.status, record.usage)
