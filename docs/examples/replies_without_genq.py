# Read a genq reply queue without genq, as a consumer in any language would: a Redis list of
# kombu messages (see docs/replies.md). Only redis-py, json and base64 here.
#
#   python docs/examples/replies_without_genq.py QUEUE [REDIS_URL] [IDLE_SECONDS]

import base64
import json
import sys

import redis

queue = sys.argv[1]
url = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/0"
idle_seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 30

broker = redis.Redis.from_url(url)
# genq pushes on the left; popping on the right reads replies in the order they were sent.
while (item := broker.brpop([queue], timeout=idle_seconds)) is not None:
    _list, raw = item
    message = json.loads(raw)  # the envelope: body, content-type, headers, properties
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    record = json.loads(body)  # the job record, as GET /v1/jobs/{id} returns it
    result = record["result"] or {}
    print(message["headers"]["genq-job-id"], record["status"], repr(result.get("text")))
