"""File Search on interp: a vector store of your files, searched directly and by an
assistant (the model is offered a `file_search` tool and cites what it used).

    interp serve --model-base-url http://localhost:11434/v1 --model llama3.1
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=anything python examples/file_search.py
"""

import openai

client = openai.OpenAI()

store = client.vector_stores.create(name="handbook")
batch = client.vector_stores.file_batches.upload_and_poll(
    store.id,
    files=[
        ("leave.md", b"# Leave\n\nEmployees get 25 days of paid leave a year."),
        ("travel.md", b"# Travel\n\nTrain travel is booked in second class."),
    ],
)
print(f"{batch.file_counts.completed} of {batch.file_counts.total} files read")

for result in client.vector_stores.search(store.id, query="how many days of leave?"):
    print(f"{result.filename} ({result.score:.2f}): {result.content[0].text[:60]}")

assistant = client.beta.assistants.create(
    model="llama3.1",
    instructions="Answer from the handbook; cite it.",
    tools=[{"type": "file_search"}],
    tool_resources={"file_search": {"vector_store_ids": [store.id]}},
)
thread = client.beta.threads.create(
    messages=[{"role": "user", "content": "How many days of leave do I get?"}]
)
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0]
if reply.type == "text":
    print(reply.text.value)
    for note in reply.text.annotations:
        if note.type == "file_citation":
            print(f"  cites {client.files.retrieve(note.file_citation.file_id).filename}")
