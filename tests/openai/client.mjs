// The official openai client against a running `quire serve`: chat,
// streaming chat with usage, structured output (refused honestly until
// constrained decoding lands), completions, embeddings, models, errors.
// Exits non-zero on the first failed check; prints "N passed, N failed".
import OpenAI from "openai";

const base = process.argv[2];
const client = new OpenAI({ baseURL: base, apiKey: "test-key-for-the-openai-client", maxRetries: 0 });
let passed = 0, failed = 0;
async function check(name, fn) {
  try { await fn(); passed++; console.log(`ok   ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e && e.stack || e}`); }
}
function assert(c, msg) { if (!c) throw new Error(msg); }

await check("models.list", async () => {
  const list = await client.models.list();
  assert(list.data.length >= 1 && typeof list.data[0].id === "string", "no models");
});
let greedy;
await check("chat.completions.create", async () => {
  const r = await client.chat.completions.create({
    model: "stories", messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 24, temperature: 0 });
  assert(r.object === "chat.completion", "object");
  assert(r.choices[0].message.role === "assistant", "role");
  assert(typeof r.choices[0].message.content === "string" && r.choices[0].message.content.length > 0, "content");
  assert(r.usage.completion_tokens === 24 && r.usage.prompt_tokens > 0, "usage");
  assert(r.choices[0].finish_reason === "length", "finish_reason");
  greedy = r.choices[0].message.content;
});
await check("chat streaming with usage", async () => {
  const stream = await client.chat.completions.create({
    model: "stories", messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 24, temperature: 0,
    stream: true, stream_options: { include_usage: true } });
  let text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta && c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert(text === greedy, `streamed text differs: ${JSON.stringify(text)} vs ${JSON.stringify(greedy)}`);
  assert(usage && usage.completion_tokens === 24, "usage chunk");
  assert(finish === "length", "finish");
});
await check("structured output with a JSON Schema (strict), streamed and not", async () => {
  const schema = { type: "object", additionalProperties: false, required: ["name", "age", "tags"],
    properties: { name: { type: "string", maxLength: 20 }, age: { type: "integer", minimum: 0, maximum: 120 },
                  tags: { type: "array", maxItems: 3, items: { enum: ["a", "b", "c"] } } } };
  const response_format = { type: "json_schema", json_schema: { name: "person", strict: true, schema } };
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({ model: "stories", temperature: 1.0, seed, max_tokens: 80,
      messages: [{ role: "user", content: "Describe a person." }], response_format });
    const v = JSON.parse(r.choices[0].message.content);
    assert(Object.keys(v).join(",") === "name,age,tags", `keys ${Object.keys(v)}`);
    assert(typeof v.name === "string" && [...v.name].length <= 20, "name");
    assert(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120, "age");
    assert(Array.isArray(v.tags) && v.tags.length <= 3 && v.tags.every(t => ["a", "b", "c"].includes(t)), "tags");
    assert(r.choices[0].finish_reason === "stop", "finish_reason");
  }
  const stream = await client.chat.completions.create({ model: "stories", temperature: 1.0, seed: 4, max_tokens: 80,
    messages: [{ role: "user", content: "Describe a person." }], response_format, stream: true });
  let text = "";
  for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? "";
  const v = JSON.parse(text);
  assert(Number.isInteger(v.age), "streamed age");
  const o = await client.chat.completions.create({ model: "stories", temperature: 1.0, max_tokens: 40,
    messages: [{ role: "user", content: "x" }], response_format: { type: "json_object" } });
  const obj = JSON.parse(o.choices[0].message.content);
  assert(obj !== null && typeof obj === "object" && !Array.isArray(obj), "json_object");
});
await check("a schema keyword that cannot be enforced is refused under strict, never ignored", async () => {
  try {
    await client.chat.completions.create({
      model: "stories", messages: [{ role: "user", content: "x" }], max_tokens: 8,
      response_format: { type: "json_schema", json_schema: { name: "t", strict: true,
        schema: { type: "array", items: { type: "object" }, uniqueItems: true, minItems: 2 } } } });
    throw new Error("accepted a json_schema the server cannot enforce");
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, `expected 400, got ${e}`);
    assert(e.param === "response_format.json_schema.schema", `param ${e.param}`);
    assert(/uniqueItems/.test(e.message), "names the keyword");
  }
});
await check("completions.create", async () => {
  const r = await client.completions.create({ model: "stories", prompt: "Once upon a time", max_tokens: 16, temperature: 0 });
  assert(r.object === "text_completion", "object");
  assert(r.choices[0].text.startsWith(", there was"), `text ${JSON.stringify(r.choices[0].text)}`);
});
await check("chat logprobs (top_logprobs), streamed equals non-streamed", async () => {
  const req = { model: "stories", messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 8, temperature: 0,
                logprobs: true, top_logprobs: 3 };
  const r = await client.chat.completions.create(req);
  const lp = r.choices[0].logprobs.content;
  assert(lp.length === 8, `tokens ${lp.length}`);
  for (const t of lp) {
    assert(typeof t.token === "string" && t.logprob <= 0 && Array.isArray(t.bytes), "token entry");
    assert(t.top_logprobs.length === 3 && t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob, "top_logprobs");
    assert(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6, "greedy picks the best");
  }
  assert(lp.map(t => t.token).join("") === r.choices[0].message.content, "tokens spell the content");
  const stream = await client.chat.completions.create({ ...req, stream: true });
  const got = [];
  for await (const chunk of stream)
    for (const c of chunk.choices) if (c.logprobs && c.logprobs.content) got.push(...c.logprobs.content);
  assert(got.length === 8 && got.every((t, i) => t.token === lp[i].token && t.logprob === lp[i].logprob), "stream");
});
await check("completions logprobs", async () => {
  const r = await client.completions.create({ model: "stories", prompt: "Once upon a time", max_tokens: 6, temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  assert(lp.tokens.length === 6 && lp.token_logprobs.length === 6 && lp.top_logprobs.length === 6, "lengths");
  assert(lp.tokens.join("") === r.choices[0].text, "tokens spell the text");
  assert(lp.text_offset[0] === 0 && lp.text_offset[1] === lp.tokens[0].length, "text_offset");
});
await check("embeddings.create", async () => {
  const r = await client.embeddings.create({ model: "bert", input: ["hello world", "the invoice total"] });
  assert(r.data.length === 2, "count");
  const v = r.data[0].embedding;
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  assert(v.length === 128 && Math.abs(norm - 1) < 1e-3, `dim ${v.length} norm ${norm}`);
});
await check("embeddings, float encoding equals base64", async () => {
  const a = await client.embeddings.create({ model: "bert", input: "hello world" });
  const b = await client.embeddings.create({ model: "bert", input: "hello world", encoding_format: "float" });
  const x = a.data[0].embedding, y = b.data[0].embedding;
  assert(x.length === y.length, "dims");
  for (let i = 0; i < x.length; i++) assert(Math.abs(x[i] - y[i]) < 1e-6, `component ${i}`);
});
await check("bad request surfaces as an API error", async () => {
  try {
    await client.chat.completions.create({ model: "stories", messages: [], max_tokens: 4 });
    throw new Error("accepted empty messages");
  } catch (e) { assert(e instanceof OpenAI.BadRequestError, `expected 400, got ${e}`); }
});
await check("wrong key is 401", async () => {
  const bad = new OpenAI({ baseURL: base, apiKey: "definitely-not-the-right-key", maxRetries: 0 });
  try { await bad.models.list(); throw new Error("accepted a wrong key"); }
  catch (e) { assert(e instanceof OpenAI.AuthenticationError, `expected 401, got ${e}`); }
});
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
