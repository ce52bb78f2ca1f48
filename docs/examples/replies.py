# Reply queues: name a queue in `reply_to` and read each job's final record from it when the
# job ends, instead of polling or waiting per job. Run it against `make up`.

from genq.settings import Settings
from producers import GenqClient

QUEUE = "example.replies"  # any name: a durable queue that genq publishes to and you read

with GenqClient(Settings()) as client:
    jobs = client.submit_many(
        {
            "kind": "completion",
            "prompt": f"The colour {colour} reminds me of",
            "max_tokens": 16,
            "reply_to": QUEUE,
        }
        for colour in ("red", "green", "blue")
    )
    waiting = {job.id for job in jobs}
    # One record per job, when it ends (succeeded, failed, cancelled, expired, dead_lettered).
    # A record is acked when the loop asks for the next one; the one you break on comes
    # again on the next replies() call, so handle replies idempotently, by job id.
    for record in client.replies(QUEUE, timeout=120):
        if record.id not in waiting:
            continue  # left over from an earlier run
        waiting.discard(record.id)
        print(record.id, record.status, repr(record.result.text if record.result else None))
        if not waiting:
            break
    print(f"{len(jobs) - len(waiting)} of {len(jobs)} replies")
