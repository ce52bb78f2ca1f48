# A background response through genq: queued at once, read as it is generated.
# OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=genq_... python openai_responses.py

from openai import OpenAI

client = OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
response = client.responses.create(
    model="gemma3-270m",
    input="Write a haiku about queues.",
    instructions="Answer in English.",
    max_output_tokens=64,
    background=True,
)
print(response.status)  # queued: the job runs whether or not anybody listens
for event in client.responses.retrieve(response.id, stream=True):
    # After a lost connection: retrieve(..., stream=True, starting_after=event.sequence_number)
    if event.type == "response.output_text.delta":
        print(event.delta, end="", flush=True)
response = client.responses.retrieve(response.id)
print(f"\n{response.status}, {response.usage.output_tokens if response.usage else 0} tokens")
