// The Assistants Quickstart app's calls, as its Next.js routes make them (the assistant of
// app/api/assistants/route.ts, the file viewer of app/api/assistants/files/route.ts), with
// the Node SDK 4.x it is written against. Run by tests/server/test_file_search.py against
// interp serve: OPENAI_BASE_URL and OPENAI_API_KEY name it. Prints what the viewer shows.
import OpenAI from "openai";

const openai = new OpenAI({ maxRetries: 0 });

const assistant = await openai.beta.assistants.create({
  instructions: "You are a helpful assistant.",
  name: "Quickstart Assistant",
  model: process.env.MODEL,
  tools: [
    { type: "code_interpreter" },
    {
      type: "function",
      function: {
        name: "get_weather",
        description: "Determine weather in my location",
        parameters: {
          type: "object",
          properties: {
            location: { type: "string", description: "The city and state e.g. San Francisco, CA" },
            unit: { type: "string", enum: ["c", "f"] },
          },
          required: ["location"],
        },
      },
    },
    { type: "file_search" },
  ],
});
const assistantId = assistant.id;

const getOrCreateVectorStore = async () => {
  const assistant = await openai.beta.assistants.retrieve(assistantId);
  if (assistant.tool_resources?.file_search?.vector_store_ids?.length > 0) {
    return assistant.tool_resources.file_search.vector_store_ids[0];
  }
  const vectorStore = await openai.beta.vectorStores.create({
    name: "sample-assistant-vector-store",
  });
  await openai.beta.assistants.update(assistantId, {
    tool_resources: { file_search: { vector_store_ids: [vectorStore.id] } },
  });
  return vectorStore.id;
};

// POST: upload a file into the assistant's vector store.
const upload = async (name, text) => {
  const vectorStoreId = await getOrCreateVectorStore();
  const file = new File([text], name);
  const openaiFile = await openai.files.create({ file, purpose: "assistants" });
  await openai.beta.vectorStores.files.create(vectorStoreId, { file_id: openaiFile.id });
  return openaiFile.id;
};

// GET: list the files, each with its name and status.
const list = async () => {
  const vectorStoreId = await getOrCreateVectorStore();
  const fileList = await openai.beta.vectorStores.files.list(vectorStoreId);
  return Promise.all(
    fileList.data.map(async (file) => {
      const fileDetails = await openai.files.retrieve(file.id);
      const vectorFileDetails = await openai.beta.vectorStores.files.retrieve(
        vectorStoreId,
        file.id,
      );
      return { file_id: file.id, filename: fileDetails.filename, status: vectorFileDetails.status };
    }),
  );
};

// DELETE: take a file out of the vector store.
const remove = async (fileId) => {
  const vectorStoreId = await getOrCreateVectorStore();
  await openai.beta.vectorStores.files.del(vectorStoreId, fileId);
};

const first = await upload("notes.md", "# Notes\nThe heron nests by the river.\n");
const second = await upload("data.csv", "city,temp\nOslo,4\n");
const listed = [];
for (let i = 0; i < 100; i++) {
  const files = await list();
  listed.splice(0, listed.length, ...files);
  if (files.every((f) => f.status !== "in_progress")) break;
  await new Promise((done) => setTimeout(done, 100));
}
const vectorStoreId = await getOrCreateVectorStore();
await remove(second);
const after = await list();
console.log(JSON.stringify({ assistantId, vectorStoreId, first, second, listed, after }));
