// serve_reasoning: reasoning models' <think> output through the official
// `openai` client and curl, on tiny random models with real vocabularies
// (tiny_model.mjs): Qwen3's (the tags are tokens: found automatically) and
// DeepSeek-V3's (no such tokens: off unless --reasoning-format deepseek;
// there with a template that opens the thinking in the prompt, as
// DeepSeek-R1's does). The models know nothing, so a `grammar` makes them
// write a reply with thinking; which tokens spell it is the model's choice
// (logit_bias bans the tag tokens to split the tags across tokens).
// Checked: message.reasoning_content and content, delta.reasoning_content
// chunks then content chunks, a reply cut inside the thinking, tags that
// stay content, tool calls after the thinking, response_format and forced
// tool calls applying after the thinking, chat_template_kwargs
// (enable_thinking), what the template gets back in the history, and the
// per-request reasoning_format.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { SERVE_DIR, assertCleanStderr, openaiModule, post, sharedPath, startFailing, startServer, tmpDir } from './lib/serve.mjs';
import { writeTinyModel } from './lib/tiny_model.mjs';

const { OpenAI } = openaiModule();
const THINK = 151667; // Qwen3's <think> and </think> tokens
const END_THINK = 151668;
const NO_TAG_TOKENS = { [THINK]: -100, [END_THINK]: -100 };
const servers = {};
const clients = {};
let dir;

function clientFor(server) {
  const opts = { baseURL: server.baseURL, apiKey: 'none', maxRetries: 0, timeout: 120000 };
  if (Number(process.versions.node.split('.')[0]) < 20) opts.httpAgent = new http.Agent({ keepAlive: false });
  return new OpenAI(opts);
}

before(async () => {
  dir = tmpDir('reasoning');
  const qwen = writeTinyModel(path.join(dir, 'qwen3'), {
    tokenizerJson: sharedPath('tokenizers/qwen3/tokenizer.json'),
    tokenizerConfig: sharedPath('tokenizers/qwen3/tokenizer_config.json'),
  });
  const ds = writeTinyModel(path.join(dir, 'deepseek'), {
    tokenizerJson: sharedPath('tokenizers/deepseek_v3/tokenizer.json'),
    tokenizerConfig: sharedPath('tokenizers/deepseek_v3/tokenizer_config.json'),
  });
  const started = await Promise.all([
    startServer(['--slots', '4', '--log-prompts'], { model: qwen.dir }),
    startServer(['--slots', '2'], { model: ds.dir }),
    startServer(['--slots', '2', '--reasoning-format', 'deepseek', '--chat-template',
      path.join(SERVE_DIR, 'think_open_template.jinja')], { model: ds.dir }),
    startServer(['--slots', '2', '--chat-template', path.join(SERVE_DIR, 'think_open_template.jinja')], { model: qwen.dir }),
  ]);
  [servers.qwen, servers.ds, servers.r1, servers.qwenOpen] = started;
  for (const [k, s] of Object.entries(servers)) clients[k] = clientFor(s);
});

after(async () => {
  for (const s of Object.values(servers)) {
    await s.stop();
    assertCleanStderr(s);
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const HI = [{ role: 'user', content: 'Hi' }];
// A GBNF grammar whose only sentence is `text`.
const exactly = (text) => `root ::= ${JSON.stringify(text)}`;
const QWEN_REPLY = '<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?';
const QWEN_THINKING = 'The user greets me. I should greet back.';
const QWEN_ANSWER = 'Hello! How can I help?';

// Reads an openai stream: the deltas, in order, per choice.
async function collect(s) {
  const out = [];
  for await (const chunk of s) {
    for (const c of chunk.choices) {
      const o = (out[c.index] ??= { reasoning: '', content: '', nReasoning: 0, nContent: 0, order: [], finish: null, logprobs: 0, calls: [] });
      const d = c.delta || {};
      assert.ok(!(d.reasoning_content && d.content), `a delta with both: ${JSON.stringify(d)}`);
      if (typeof d.reasoning_content === 'string') {
        assert.ok(d.reasoning_content.length > 0, 'an empty reasoning delta');
        o.reasoning += d.reasoning_content;
        o.nReasoning++;
        o.order.push('r');
      }
      if (typeof d.content === 'string' && d.content.length > 0) {
        o.content += d.content;
        o.nContent++;
        o.order.push('c');
      }
      for (const t of d.tool_calls || []) {
        o.order.push('t');
        if (!o.calls[t.index]) o.calls[t.index] = { name: t.function.name, arguments: '' };
        o.calls[t.index].arguments += t.function.arguments || '';
      }
      if (c.logprobs && c.logprobs.content) o.logprobs += c.logprobs.content.length;
      if (c.finish_reason) o.finish = c.finish_reason;
    }
  }
  return out;
}

const thinkingFirst = (order) => !order.join('').match(/[ct].*r/);

test('non-streaming: the thinking in reasoning_content, the answer in content', async () => {
  for (const logit_bias of [undefined, NO_TAG_TOKENS]) {
    const r = await clients.qwen.chat.completions.create({
      model: 'm', messages: HI, temperature: 0, max_tokens: 100, grammar: exactly(QWEN_REPLY), logit_bias,
    });
    const c = r.choices[0];
    const what = JSON.stringify(c);
    assert.equal(c.finish_reason, 'stop', what);
    assert.equal(c.message.reasoning_content, QWEN_THINKING, what);
    assert.equal(c.message.content, QWEN_ANSWER, what);
    assert.ok(r.usage.completion_tokens >= 10, what);
  }
});

test('streaming: reasoning_content deltas, then content deltas, per choice', async () => {
  for (const logit_bias of [undefined, NO_TAG_TOKENS]) {
    const s = await clients.qwen.chat.completions.create({
      model: 'm', messages: HI, temperature: 1, seed: 4, n: 2, max_tokens: 100, stream: true,
      stream_options: { include_usage: true }, logprobs: true, grammar: exactly(QWEN_REPLY), logit_bias,
    });
    const out = await collect(s);
    assert.equal(out.length, 2);
    for (const o of out) {
      const what = JSON.stringify(o);
      assert.equal(o.reasoning, QWEN_THINKING, what);
      assert.equal(o.content, QWEN_ANSWER, what);
      assert.equal(o.finish, 'stop', what);
      assert.ok(o.nReasoning >= 3 && o.nContent >= 2, `sent as it came: ${what}`);
      assert.ok(thinkingFirst(o.order), what);
      assert.ok(o.logprobs >= 10, `every token's logprobs go with some chunk: ${what}`);
    }
  }
});

test('a reply cut by max_tokens inside the thinking has only reasoning_content', async () => {
  const grammar = 'root ::= "<think>\\n" [a-z ]{300} "\\n</think>\\n\\nDone"';
  const r = await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 1, seed: 2, max_tokens: 12, grammar,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'length', JSON.stringify(c));
  assert.match(c.message.reasoning_content, /^[a-z][a-z ]*$/, JSON.stringify(c));
  assert.equal(c.message.content, null, JSON.stringify(c));
  const out = await collect(await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 1, seed: 2, max_tokens: 12, grammar, stream: true,
  }));
  assert.equal(out[0].finish, 'length');
  assert.equal(out[0].reasoning, c.message.reasoning_content, 'the stream says what the whole reply says');
  assert.equal(out[0].nContent, 0);
});

test('without thinking the reply is content; tags later in the answer stay content', async () => {
  for (const text of ['Just an answer.', 'Hi <think>not thinking</think> there']) {
    const r = await clients.qwen.chat.completions.create({ model: 'm', messages: HI, temperature: 0, max_tokens: 60, grammar: exactly(text) });
    assert.equal(r.choices[0].message.content, text);
    assert.equal(r.choices[0].message.reasoning_content, undefined, JSON.stringify(r.choices[0]));
    const out = await collect(await clients.qwen.chat.completions.create({
      model: 'm', messages: HI, temperature: 0, max_tokens: 60, grammar: exactly(text), stream: true, logit_bias: NO_TAG_TOKENS,
    }));
    assert.equal(out[0].content, text);
    assert.equal(out[0].nReasoning, 0);
  }
  // After the first </think>, tags are answer text.
  const r = await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 60, grammar: exactly('<think>a</think>b <think>c</think>'),
  });
  assert.equal(r.choices[0].message.reasoning_content, 'a');
  assert.equal(r.choices[0].message.content, 'b <think>c</think>');
});

test('reasoning_format "none" in a request keeps the tags in content; a bad one is refused', async () => {
  const r = await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 100, grammar: exactly(QWEN_REPLY), reasoning_format: 'none',
  });
  assert.equal(r.choices[0].message.content, QWEN_REPLY);
  assert.equal(r.choices[0].message.reasoning_content, undefined);
  const bad = await post(servers.qwen.port, '/v1/chat/completions', { messages: HI, reasoning_format: 'r1' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'reasoning_format');
});

test('tool calls after the thinking are parsed from the answer, whole and streamed', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
  const reply = '<think>\nThey want the weather. I call the tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
  const r = await clients.qwen.chat.completions.create({ model: 'm', messages: HI, temperature: 0, max_tokens: 120, tools, grammar: exactly(reply) });
  const c = r.choices[0];
  const what = JSON.stringify(c);
  assert.equal(c.finish_reason, 'tool_calls', what);
  assert.equal(c.message.reasoning_content, 'They want the weather. I call the tool.', what);
  assert.equal(c.message.content, null, what);
  assert.equal(c.message.tool_calls.length, 1, what);
  assert.equal(c.message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), { city: 'Paris' });
  const out = await collect(await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 120, tools, grammar: exactly(reply), stream: true, logit_bias: NO_TAG_TOKENS,
  }));
  const o = out[0];
  assert.equal(o.finish, 'tool_calls', JSON.stringify(o));
  assert.equal(o.reasoning, 'They want the weather. I call the tool.');
  assert.equal(o.content, '');
  assert.ok(thinkingFirst(o.order), JSON.stringify(o.order));
  assert.equal(o.calls.length, 1);
  assert.deepEqual(JSON.parse(o.calls[0].arguments), { city: 'Paris' });
});

test('response_format and forced tool calls constrain the answer after the thinking', async () => {
  // The tag tokens biased so the model opens and closes a thinking part at
  // once (<think> first, as only it may begin one; then </think>): what
  // follows must be the schema's.
  const logit_bias = { [THINK]: 50, [END_THINK]: 100 };
  const r = await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 40, logit_bias,
    response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'integer', minimum: 0, maximum: 999 } } },
  });
  const c = r.choices[0];
  assert.equal(c.message.reasoning_content, '', JSON.stringify(c));
  assert.ok(Number.isInteger(JSON.parse(c.message.content)), JSON.stringify(c));
  const t = await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 80, logit_bias, parallel_tool_calls: false, tool_choice: 'required',
    tools: [{ type: 'function', function: { name: 'pick', parameters: { type: 'object', properties: { unit: { enum: ['c', 'f'] } }, required: ['unit'], additionalProperties: false } } }],
  });
  const tc = t.choices[0];
  assert.equal(tc.finish_reason, 'tool_calls', JSON.stringify(tc));
  assert.equal(tc.message.reasoning_content, '', JSON.stringify(tc));
  assert.ok(['c', 'f'].includes(JSON.parse(tc.message.tool_calls[0].function.arguments).unit));
  // A template that opens the thinking: the answer's grammar comes after
  // </think>, which the model must write first (biased here at once).
  const open = await clients.qwenOpen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 40, logit_bias: { [END_THINK]: 100 },
    response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'integer', minimum: 0, maximum: 999 } } },
  });
  assert.equal(open.choices[0].message.reasoning_content, '', JSON.stringify(open.choices[0]));
  assert.ok(Number.isInteger(JSON.parse(open.choices[0].message.content)), JSON.stringify(open.choices[0]));
  const openTool = await clients.qwenOpen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 80, logit_bias: { [END_THINK]: 100 }, parallel_tool_calls: false,
    tool_choice: { type: 'function', function: { name: 'pick' } },
    tools: [{ type: 'function', function: { name: 'pick', parameters: { type: 'object', properties: { unit: { enum: ['c', 'f'] } }, required: ['unit'], additionalProperties: false } } }],
  });
  assert.equal(openTool.choices[0].finish_reason, 'tool_calls', JSON.stringify(openTool.choices[0]));
  assert.equal(openTool.choices[0].message.reasoning_content, '');
  // A raw grammar constrains the raw output: not with the others.
  for (const extra of [{ response_format: { type: 'json_object' } }, { tool_choice: 'required', tools: [{ type: 'function', function: { name: 'f' } }] }]) {
    const bad = await post(servers.qwen.port, '/v1/chat/completions', { messages: HI, grammar: 'root ::= "x"', ...extra });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.param, 'grammar', bad.text);
  }
  const bad = await post(servers.qwen.port, '/v1/chat/completions', { messages: HI, grammar: 'root ::= nope' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'grammar');
});

// The prompt of the request log line (--log-prompts) of completion `id`.
function loggedPrompt(server, id) {
  const line = server.stderr.split('\n').find((l) => l.includes(`"id":"${id.replace(/^chatcmpl-/, '')}"`));
  assert.ok(line, `no log line for ${id}`);
  return JSON.parse(line).prompt;
}

test('chat_template_kwargs reach the template (Qwen3 enable_thinking)', async () => {
  const r = await clients.qwen.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 20, grammar: exactly('Hi.'), chat_template_kwargs: { enable_thinking: false },
  });
  assert.equal(r.choices[0].message.content, 'Hi.');
  assert.equal(r.choices[0].message.reasoning_content, undefined);
  await new Promise((res) => setTimeout(res, 200)); // the log line follows the response
  assert.ok(loggedPrompt(servers.qwen, r.id).endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'));
  for (const [kwargs, re] of [[{ messages: [] }, /chat_template_kwargs.messages/], [[1], /object/]]) {
    const bad = await post(servers.qwen.port, '/v1/chat/completions', { messages: HI, chat_template_kwargs: kwargs });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.param, 'chat_template_kwargs');
    assert.match(bad.json.error.message, re);
  }
});

test('history: the thinking of earlier turns is not rendered; reasoning_content of a tool turn is', async () => {
  const r = await clients.qwen.chat.completions.create({
    model: 'm', temperature: 0, max_tokens: 5, grammar: exactly('ok'),
    messages: [...HI, { role: 'assistant', content: '<think>\nSECRET-1\n</think>\n\nHello.' }, { role: 'user', content: 'Weather?' }],
  });
  const t = await clients.qwen.chat.completions.create({
    model: 'm', temperature: 0, max_tokens: 5, grammar: exactly('ok'),
    messages: [{ role: 'user', content: 'Weather?' },
      { role: 'assistant', content: '', reasoning_content: 'NEED-TOOL', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'w', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' }],
  });
  await new Promise((res) => setTimeout(res, 200));
  const p1 = loggedPrompt(servers.qwen, r.id);
  assert.ok(p1.includes('<|im_start|>assistant\nHello.<|im_end|>'), p1);
  assert.ok(!p1.includes('SECRET-1'), p1);
  const p2 = loggedPrompt(servers.qwen, t.id);
  assert.ok(p2.includes('<|im_start|>assistant\n<think>\nNEED-TOOL\n</think>\n\n'), p2);
});

test('DeepSeek-V3 vocabulary: off by itself; --reasoning-format deepseek with a template that opens the thinking', async () => {
  assert.doesNotMatch(servers.ds.stderr, /reasoning_content/);
  assert.match(servers.r1.stderr, /<think> part goes to reasoning_content\n/);
  const reply = 'Let me see: 2 + 2 is 4.\n</think>\n\nIt is 4.';
  const plain = await clients.ds.chat.completions.create({ model: 'm', messages: HI, temperature: 0, max_tokens: 80, grammar: exactly(reply) });
  assert.equal(plain.choices[0].message.content, reply);
  assert.equal(plain.choices[0].message.reasoning_content, undefined);
  // The prompt ends with <think>\n: the reply starts inside the thinking.
  const r = await clients.r1.chat.completions.create({ model: 'm', messages: HI, temperature: 0, max_tokens: 80, grammar: exactly(reply) });
  assert.equal(r.choices[0].message.reasoning_content, 'Let me see: 2 + 2 is 4.');
  assert.equal(r.choices[0].message.content, 'It is 4.');
  const out = await collect(await clients.r1.chat.completions.create({
    model: 'm', messages: HI, temperature: 1, seed: 9, max_tokens: 80, grammar: exactly(reply), stream: true,
  }));
  assert.equal(out[0].reasoning, 'Let me see: 2 + 2 is 4.');
  assert.equal(out[0].content, 'It is 4.');
  assert.ok(thinkingFirst(out[0].order) && out[0].nReasoning >= 3);
  // DeepSeek-V3 spells the tags with several tokens: held until whole.
  const endThink = (await post(servers.r1.port, '/tokenize', { content: '</think>' })).json.tokens;
  assert.ok(endThink.length > 1, JSON.stringify(endThink));
  const rf = await clients.r1.chat.completions.create({
    model: 'm', messages: HI, temperature: 0, max_tokens: 60, grammar: exactly('short</think>\n42'),
  });
  assert.equal(rf.choices[0].message.reasoning_content, 'short');
  assert.equal(rf.choices[0].message.content, '42');
});

test('completions are not split: the text is the raw output', async () => {
  const r = await clients.qwen.completions.create({ model: 'm', prompt: 'Hi', temperature: 0, max_tokens: 40, grammar: exactly('<think>a</think>b') });
  assert.equal(r.choices[0].text, '<think>a</think>b');
});

test('curl: reasoning_content whole and streamed', async () => {
  const run = promisify(execFile);
  const url = `http://127.0.0.1:${servers.qwen.port}/v1/chat/completions`;
  const body = { messages: HI, temperature: 0, max_tokens: 100, grammar: exactly(QWEN_REPLY) };
  const whole = await run('curl', ['-sS', '--fail-with-body', url, '-H', 'Content-Type: application/json', '-d', JSON.stringify(body)]);
  const msg = JSON.parse(whole.stdout).choices[0].message;
  assert.equal(msg.reasoning_content, QWEN_THINKING);
  assert.equal(msg.content, QWEN_ANSWER);
  const streamed = await run('curl', ['-sSN', '--fail-with-body', url, '-H', 'Content-Type: application/json', '-d', JSON.stringify({ ...body, stream: true })]);
  const events = streamed.stdout.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  assert.equal(events[events.length - 1], '[DONE]');
  let reasoning = '';
  let content = '';
  for (const e of events.slice(0, -1)) {
    const d = JSON.parse(e).choices[0].delta;
    reasoning += d.reasoning_content || '';
    content += d.content || '';
  }
  assert.equal(reasoning, QWEN_THINKING);
  assert.equal(content, QWEN_ANSWER);
});

test('--reasoning-format takes auto, deepseek or none', async () => {
  const r = await startFailing(['--reasoning-format', 'r1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--reasoning-format: "r1" is not auto, deepseek or none/);
});
