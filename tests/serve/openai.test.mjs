// serve_openai: `qiao serve` driven by the official `openai` npm client:
// completions and chat completions, streaming and not, token-id prompts,
// usage, n=2, stop strings, logprobs, and errors surfacing as the client's
// own exception classes (AuthenticationError, RateLimitError with
// Retry-After, BadRequestError).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';
import {
  CHAT_TEMPLATE, REF_PROMPT, REF_PROMPT_IDS, assertUsage, greedyReference, metricSum, metrics, openaiModule,
  pollUntil, startServer, tmpDir, writeKeys,
} from './lib/serve.mjs';

const { OpenAI } = openaiModule();
const ref = greedyReference();
const MODEL = 'qiao-test-stories';
const MAIN_KEY = 'sk-main-7f3a9c2e1b5d4086a1f2';
const SOLO_KEY = 'sk-solo-0c8e2d4f6a1b3957e2d1';
const PAIR_KEY = 'sk-pair-5a0d3c9e7b2f1864c3e0';
let server;
let client;

// The client as users make it. On Node 18 (Debian 12's), openai 4.x's
// default keep-alive agent (agentkeepalive under node-fetch 2) makes every
// streamed response fail with "Premature close", against any server (a
// plain node:http SSE server too); without keep-alive it works. Node 20+
// uses the client's defaults.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
function makeClient(apiKey) {
  const opts = { baseURL: server.baseURL, apiKey, maxRetries: 0, timeout: 120000 };
  if (NODE_MAJOR < 20) opts.httpAgent = new http.Agent({ keepAlive: false });
  return new OpenAI(opts);
}

before(async () => {
  const keys = writeKeys(tmpDir('openai'), [
    '# tenants of the openai client test',
    `${MAIN_KEY} main`,
    `${SOLO_KEY} solo max_running=1 max_queued=0`,
    `${PAIR_KEY} pair max_running=1 max_queued=1`,
  ]);
  // The CPU backend slowed down by 100 us an op (the faulty test plugin):
  // a request held open must still be running when the next one arrives,
  // whatever the build's speed.
  const plugin = process.env.QIAO_FAULTY_PLUGIN;
  if (!plugin || !fs.existsSync(plugin)) throw new Error(`QIAO_FAULTY_PLUGIN (${plugin}) is not a file`);
  server = await startServer(['--device', plugin, '--slots', '4', '--api-keys', keys, '--chat-template', CHAT_TEMPLATE,
    '--model-name', MODEL], { env: { QIAO_FAULTY_OP_DELAY_US: '100' } });
  client = makeClient(MAIN_KEY);
});
after(async () => {
  if (server) {
    await server.stop();
    for (const k of [MAIN_KEY, SOLO_KEY, PAIR_KEY]) assert.ok(!server.stderr.includes(k), 'a key in the server log');
  }
});

function header(err, name) {
  const h = err.headers;
  if (!h) return undefined;
  return typeof h.get === 'function' ? h.get(name) : h[name];
}

test('models.list names the model', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), [MODEL]);
  assert.equal(page.data[0].object, 'model');
});

test('completion: greedy text and usage equal llama2.c', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, user: 'u-1' });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, MODEL);
  assert.ok(typeof r.id === 'string' && r.id.length > 0);
  assert.ok(Number.isInteger(r.created));
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].text, ref.text);
  assert.equal(r.choices[0].finish_reason, 'length');
  assertUsage(r.usage, 5, 60);
});

test('completion: a token-id prompt', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: REF_PROMPT_IDS, max_tokens: 60, temperature: 0 });
  assert.equal(r.choices[0].text, ref.text);
  assertUsage(r.usage, 5, 60);
});

test('completion: streaming with include_usage', async () => {
  const s = await client.completions.create({
    model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  const ids = new Set();
  for await (const chunk of s) {
    ids.add(chunk.id);
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    assert.equal(usage, null, 'a chunk after the usage chunk');
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(ids.size, 1);
  assert.equal(text, ref.text);
  assert.equal(finish, 'length');
  assertUsage(usage, 5, 60, 'stream usage');
});

test('completion: streaming without include_usage has no usage', async () => {
  const s = await client.completions.create({ model: MODEL, prompt: REF_PROMPT_IDS, max_tokens: 60, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of s) {
    assert.ok(chunk.choices.length > 0, 'an empty-choices chunk without include_usage');
    assert.ok(!chunk.usage, 'usage without include_usage');
    text += chunk.choices[0].text;
  }
  assert.equal(text, ref.text);
});

test('completion: n=2', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, n: 2 });
  assert.deepEqual(r.choices.map((c) => c.index).sort(), [0, 1]);
  for (const c of r.choices) assert.equal(c.text, ref.text);
  assertUsage(r.usage, 5, 120);
  // Sampled and streamed: both choices arrive, each ends with a finish_reason.
  const s = await client.completions.create({ model: MODEL, prompt: 'The dog', max_tokens: 24, temperature: 1, n: 2, stream: true, ignore_eos: true });
  const texts = ['', ''];
  const finish = [null, null];
  for await (const chunk of s) {
    for (const c of chunk.choices) {
      assert.equal(finish[c.index], null, 'a chunk after the finish_reason');
      texts[c.index] += c.text;
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  assert.deepEqual(finish, ['length', 'length']);
  assert.ok(texts[0].length > 0 && texts[1].length > 0);
});

test('completion: stop strings', async () => {
  const one = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, stop: 'Lily' });
  assert.equal(one.choices[0].text, ref.text.slice(0, ref.text.indexOf('Lily')));
  assert.equal(one.choices[0].finish_reason, 'stop');
  assert.ok(one.usage.completion_tokens < 60);
  const two = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, stop: ['park', 'girl'] });
  assert.equal(two.choices[0].text, ref.text.slice(0, ref.text.indexOf('girl')));
  assert.equal(two.choices[0].finish_reason, 'stop');
  // Streamed: no part of the stop string leaks.
  const s = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, stop: ['red ball'], stream: true });
  let text = '';
  let finish = null;
  for await (const chunk of s) {
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(text, ref.text.slice(0, ref.text.indexOf('red ball')));
  assert.equal(finish, 'stop');
  // A stop string that never occurs changes nothing.
  const none = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, stop: ['zebra'] });
  assert.equal(none.choices[0].text, ref.text);
  assert.equal(none.choices[0].finish_reason, 'length');
});

test('completion: logprobs', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0, logprobs: 3 });
  const c = r.choices[0];
  assert.equal(c.text, ref.text);
  const lp = c.logprobs;
  assert.ok(lp, 'no logprobs');
  assert.equal(lp.tokens.length, 60);
  assert.equal(lp.token_logprobs.length, 60);
  assert.equal(lp.top_logprobs.length, 60);
  assert.equal(lp.tokens.join(''), ref.text);
  for (let i = 0; i < 60; i++) {
    const top = lp.top_logprobs[i];
    const vals = Object.values(top);
    assert.ok(vals.length >= 1 && vals.length <= 3, `top_logprobs[${i}] has ${vals.length} entries`);
    assert.ok(lp.token_logprobs[i] <= 0 && Number.isFinite(lp.token_logprobs[i]));
    assert.ok(vals.reduce((a, v) => a + Math.exp(v), 0) <= 1 + 1e-4, `top_logprobs[${i}] sum to more than 1`);
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs(Math.max(...vals) - lp.token_logprobs[i]) < 1e-4, `token ${i} is not the argmax: ${JSON.stringify(top)} vs ${lp.token_logprobs[i]}`);
    assert.ok(lp.tokens[i] in top, `token ${i} ${JSON.stringify(lp.tokens[i])} not among ${JSON.stringify(top)}`);
  }
});

const MESSAGES = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];
// What chat_template.jinja renders for MESSAGES with a generation prompt.
const RENDERED = 'system: You tell short stories.\nuser: Tell me about a cat.\nassistant:';

let chatGreedy;
test('chat: the template renders the prompt; greedy equals the completion of the rendered text', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_completion_tokens: 24, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const m = r.choices[0].message;
  assert.equal(m.role, 'assistant');
  assert.equal(typeof m.content, 'string');
  assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
  const c = await client.completions.create({ model: MODEL, prompt: RENDERED, max_tokens: 24, temperature: 0 });
  assert.equal(m.content, c.choices[0].text);
  assert.equal(r.choices[0].finish_reason, c.choices[0].finish_reason);
  assertUsage(r.usage, c.usage.prompt_tokens, c.usage.completion_tokens, 'chat usage');
  chatGreedy = m.content;
  // The legacy max_tokens works too.
  const legacy = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 24, temperature: 0 });
  assert.equal(legacy.choices[0].message.content, chatGreedy);
});

test('chat: streaming, role first, same content', async () => {
  const s = await client.chat.completions.create({
    model: MODEL, messages: MESSAGES, max_completion_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let first = true;
  let text = '';
  let finish = null;
  let usage = null;
  const ids = new Set();
  for await (const chunk of s) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    ids.add(chunk.id);
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    const d = chunk.choices[0].delta;
    if (first) assert.equal(d.role, 'assistant', 'the first chunk carries the role');
    first = false;
    if (d.content) text += d.content;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(ids.size, 1);
  assert.equal(text, chatGreedy);
  assert.ok(['length', 'stop'].includes(finish));
  assert.ok(usage && usage.completion_tokens > 0);
});

test('chat: logprobs and top_logprobs', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: MESSAGES, max_completion_tokens: 24, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const content = r.choices[0].logprobs && r.choices[0].logprobs.content;
  assert.ok(Array.isArray(content), `no logprobs.content: ${JSON.stringify(r.choices[0])}`);
  assert.equal(content.length, r.usage.completion_tokens);
  assert.equal(content.map((t) => t.token).join(''), r.choices[0].message.content);
  for (const t of content) {
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.top_logprobs) && t.top_logprobs.length === 2, JSON.stringify(t));
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob, 'top_logprobs not in order');
    assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4, 'greedy token is not the first alternative');
    assert.equal(t.top_logprobs[0].token, t.token);
    if (t.bytes !== null) assert.deepEqual(Buffer.from(t.bytes).toString('utf8'), t.token);
  }
});

test('errors: AuthenticationError for a wrong key', async () => {
  const bad = makeClient('sk-wrong-0000000000000000');
  await assert.rejects(bad.completions.create({ model: MODEL, prompt: 'x', max_tokens: 1 }), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, 401);
    return true;
  });
  await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
});

test('errors: BadRequestError naming the field', async () => {
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 'lots' }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, 400);
    assert.match(e.message, /max_tokens/);
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: 'hello' }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
    assert.match(e.message, /messages/);
    return true;
  });
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', temperature: 'warm' }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
    assert.match(e.message, /temperature/);
    return true;
  });
});

// Holds the tenant's one running slot with a long stream until release().
async function holdSlot(c) {
  const ac = new AbortController();
  const s = await c.completions.create(
    { model: MODEL, prompt: REF_PROMPT, max_tokens: 400, temperature: 0, ignore_eos: true, stream: true },
    { signal: ac.signal });
  const it = s[Symbol.asyncIterator]();
  const first = await it.next();
  assert.ok(!first.done);
  return async () => {
    ac.abort();
    try { while (!(await it.next()).done); } catch { /* aborted */ }
  };
}

function assertRateLimit(e) {
  assert.ok(e instanceof OpenAI.RateLimitError, `${e.constructor.name}: ${e.message}`);
  assert.equal(e.status, 429);
  const ra = header(e, 'retry-after');
  assert.ok(ra !== undefined && ra !== null, 'no Retry-After on 429');
  assert.match(String(ra), /^\d+$/);
  assert.ok(Number(ra) >= 1);
  return true;
}

test('errors: RateLimitError with Retry-After: max_running=1 max_queued=0, two at once', async () => {
  const solo = makeClient(SOLO_KEY);
  const release = await holdSlot(solo);
  try {
    // Its one slot is taken and it may queue nothing: refused at once.
    await assert.rejects(solo.completions.create({ model: MODEL, prompt: 'The cat', max_tokens: 4 }), assertRateLimit);
    // Other tenants are not affected.
    const other = await client.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0 });
    assert.equal(other.choices[0].text, ref.text);
  } finally {
    await release();
  }
  // Once the first is gone (a disconnect frees the slot), solo is served again.
  let ok = null;
  for (let i = 0; i < 30 && !ok; i++) {
    try {
      ok = await solo.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0 });
    } catch (e) {
      if (!(e instanceof OpenAI.RateLimitError)) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.ok(ok, 'solo still refused 3 s after its running request was dropped');
  assert.equal(ok.choices[0].text, ref.text);
});

test('errors: RateLimitError with Retry-After: max_running=1 max_queued=1, three at once', async () => {
  const pair = makeClient(PAIR_KEY);
  const release = await holdSlot(pair);
  let queued;
  try {
    queued = pair.completions.create({ model: MODEL, prompt: REF_PROMPT, max_tokens: 60, temperature: 0 });
    queued.catch(() => {});
    // Once the second is queued, the third is refused.
    await pollUntil(async () => metricSum((await metrics(server.port, { Authorization: `Bearer ${MAIN_KEY}` })).samples,
      'qiao_requests_queued', { tenant: 'pair' }) === 1, 10000, 'the second request to be queued');
    await assert.rejects(pair.completions.create({ model: MODEL, prompt: 'The cat', max_tokens: 1 }), assertRateLimit);
  } finally {
    await release();
  }
  // The queued one runs once the slot is free, and is exact.
  const q = await queued;
  assert.equal(q.choices[0].text, ref.text);
});
