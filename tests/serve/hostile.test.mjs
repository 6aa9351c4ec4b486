// serve_hostile: `qiao serve` (the ASan build under CTest) against hostile
// and broken clients: malformed, truncated and deeply nested JSON, huge
// numbers and strings, wrong types for each field, invalid UTF-8, unknown
// routes and methods, slow senders (--timeout 2), slowloris bodies, clients
// that disconnect mid-stream and mid-queue, and a flood past the queue limit
// (--slots 2 --max-queue 4). Afterwards nothing runs, nothing is queued, no
// KV block is held, the server still answers correctly and exits 0.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';
import {
  CHAT_TEMPLATE, REF_PROMPT, assertError, assertRetryAfter, assertUsage, checkStream, get, greedyBody,
  greedyReference, metricSum, metrics, pollUntil, post, raw, request, sleep, startServer, stream,
} from './lib/serve.mjs';

const ref = greedyReference();
let server;
let port;

before(async () => {
  // The CPU backend slowed down by 100 us an op (the faulty test plugin), so
  // that requests meant to be running or queued still are when the test
  // looks, whatever the build's speed.
  const plugin = process.env.QIAO_FAULTY_PLUGIN;
  if (!plugin || !fs.existsSync(plugin)) throw new Error(`QIAO_FAULTY_PLUGIN (${plugin}) is not a file`);
  server = await startServer(['--device', plugin, '--slots', '2', '--max-queue', '4', '--timeout', '2',
    '--chat-template', CHAT_TEMPLATE], { env: { QIAO_FAULTY_OP_DELAY_US: '100' } });
  port = server.port;
});
after(async () => {
  if (server) await server.stop();
});

const COMPLETIONS = '/v1/completions';
const CHAT = '/v1/chat/completions';

async function assertAlive(what) {
  const r = await post(port, COMPLETIONS, greedyBody());
  assert.equal(r.status, 200, `${what}: the server no longer answers: ${r.text.slice(0, 300)}`);
  assert.equal(r.json.choices[0].text, ref.text, `${what}: wrong text afterwards`);
}

async function sendRaw(path, body, what) {
  const r = await post(port, path, Buffer.isBuffer(body) ? body : Buffer.from(body));
  return { r, e: assertError(r, 400, what) };
}

test('malformed and truncated JSON: 400', async () => {
  const bodies = [
    '', ' ', '{', '}', '{"prompt": "Once up', '{"prompt": "a", }', "{prompt: 'a'}", '{"prompt" "a"}',
    'null', '[]', '"text"', '42', 'true', '{"prompt":"a"} {"prompt":"b"}', '{"prompt":"a"} x',
    '\u0000', '{"prompt":"a","max_tokens":}', '{"prompt":"a\\x41"}', '{"prompt":"\\u12"}', '{"prompt":NaN}',
    '{"prompt":"a","max_tokens":01}', '{"prompt":"a","temperature":.5}', '{"prompt":"a"', '{"messages":[{"role":"user","content":"hi"}',
  ];
  for (const path of [COMPLETIONS, CHAT]) {
    for (const b of bodies) await sendRaw(path, b, `${path} ${JSON.stringify(b)}`);
  }
  // Not JSON at all, with a content type that says so.
  const r = await post(port, COMPLETIONS, 'prompt=Once', { 'Content-Type': 'application/x-www-form-urlencoded' });
  assert.equal(r.status, 400, r.text);
  await assertAlive('after malformed JSON');
});

test('JSON nested 10000 deep: 400', async () => {
  const deep = '['.repeat(10000) + ']'.repeat(10000);
  await sendRaw(COMPLETIONS, `{"prompt":${deep}}`, 'deep prompt');
  await sendRaw(COMPLETIONS, deep, 'deep array body');
  await sendRaw(COMPLETIONS, '{"a":'.repeat(10000) + '1' + '}'.repeat(10000), 'deep object');
  await sendRaw(CHAT, `{"messages":[{"role":"user","content":${deep}}]}`, 'deep content');
  await sendRaw(COMPLETIONS, `{"prompt":"a","logit_bias":${'{"1":'.repeat(10000)}1${'}'.repeat(10000)}}`, 'deep logit_bias');
  // Unbalanced: only openings.
  await sendRaw(COMPLETIONS, '['.repeat(100000), 'open brackets');
  await assertAlive('after deep nesting');
});

test('huge numbers: 400 naming the field', async () => {
  for (const v of ['1e400', '-1', '0', '-1e400', '1.5', '-9223372036854775809', '"16"', '[16]']) {
    const { e } = await sendRaw(COMPLETIONS, `{"prompt":"Once","max_tokens":${v}}`, `max_tokens ${v}`);
    assert.match(e.message, /max_tokens/, `max_tokens ${v}: ${e.message}`);
  }
  for (const [field, v] of [['temperature', '1e400'], ['temperature', '-1e400'], ['top_p', '1e400'], ['n', '1e400'],
    ['n', '18446744073709551616'], ['top_k', '-1'], ['seed', '1e400'], ['seed', '-1e400'],
    ['presence_penalty', '1e400'], ['logprobs', '1e400']]) {
    const { e } = await sendRaw(COMPLETIONS, `{"prompt":"Once","${field}":${v}}`, `${field} ${v}`);
    assert.match(e.message, new RegExp(field), `${field} ${v}: ${e.message}`);
  }
  const { e } = await sendRaw(CHAT, `{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1e400}`, 'max_completion_tokens');
  assert.match(e.message, /max_completion_tokens/);
  // A huge integer max_tokens is capped to the context (or refused naming it).
  for (const v of ['4294967296', '18446744073709551616', '9223372036854775807']) {
    const r = await post(port, COMPLETIONS, `{"prompt":"${REF_PROMPT}","max_tokens":${v},"temperature":0,"stop":["."]}`);
    if (r.status === 400) {
      assert.match(assertError(r, 400, `max_tokens ${v}`).message, /max_tokens/);
      continue;
    }
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, ref.text.slice(0, ref.text.indexOf('.')), `max_tokens ${v}`);
  }
  // Token ids out of range.
  for (const ids of [[1, 512], [1, -1], [1, 1e400], [1, 2 ** 64], [1, 1.5], [1, '403']]) {
    const body = `{"prompt":[${ids.map((x) => (typeof x === 'string' ? `"${x}"` : x === 1e400 ? '1e400' : String(x))).join(',')}]}`;
    const { e: pe } = await sendRaw(COMPLETIONS, body, `ids ${body}`);
    assert.match(pe.message, /prompt/);
  }
});

test('huge strings: 900 KB prompt is refused for the context, 2 MiB body is 413', async () => {
  const big = 'Once upon a time, there was a little girl. '.repeat(Math.ceil(900 * 1024 / 44)).slice(0, 900 * 1024);
  const r = await post(port, COMPLETIONS, { prompt: big, max_tokens: 4 });
  const e = assertError(r, 400, '900 KB prompt');
  assert.match(e.message, /prompt/);
  assert.match(e.message, /context/);
  const c = await post(port, CHAT, { messages: [{ role: 'user', content: big }], max_completion_tokens: 4 });
  assertError(c, 400, '900 KB message');
  // 900 KB of one character with no spaces, and of invalid-looking bytes escaped.
  const one = await post(port, COMPLETIONS, { prompt: 'x'.repeat(900 * 1024), max_tokens: 4 });
  assertError(one, 400, '900 KB of x');
  const stop = await post(port, COMPLETIONS, { prompt: 'Once', stop: ['y'.repeat(900 * 1024)], max_tokens: 4 });
  assert.ok(stop.status === 200 || stop.status === 400, `900 KB stop string: ${stop.status}`);
  if (stop.status === 400) assert.match(assertError(stop, 400).message, /stop/);

  // > --max-body (1 MiB by default): 413, whether the body is sent or not.
  const body = Buffer.from(JSON.stringify({ prompt: 'z'.repeat(2 * 1024 * 1024) }));
  const declared = await raw(port, [`POST ${COMPLETIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`], { timeoutMs: 20000 });
  assert.equal(declared.status, 413, `declared 2 MiB: ${declared.text.slice(0, 300)} (${declared.error})`);
  // Part of the body first, as a client that sends while the server reads
  // (raw() stops sending once the answer is in, as curl does).
  const head = `POST ${COMPLETIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  const sent = await raw(port, [head, body.subarray(0, 65536), { delay: 300 }, body.subarray(65536)], { timeoutMs: 20000, stopOnAnswer: true });
  assert.equal(sent.status, 413, `sent 2 MiB: ${sent.text.slice(0, 300)} (${sent.error})`);
  assert.match(sent.text, /"error"/);
  // All of it at once: node drops what it read when a write fails (EPIPE),
  // so the answer may be lost here; the server must just survive it.
  const blast = await raw(port, [head, body], { timeoutMs: 20000, stopOnAnswer: true });
  assert.ok(blast.status === 413 || blast.error, `2 MiB at once: ${blast.text.slice(0, 200)}`);
  // Huge headers and request lines are refused, not crashed on.
  const hdr = await raw(port, [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(1024 * 1024)}\r\n\r\n`], { timeoutMs: 20000 });
  assert.ok(hdr.status === null || (hdr.status >= 400 && hdr.status < 500), `1 MiB header: ${hdr.status}`);
  const url = await raw(port, [`GET /${'a'.repeat(1024 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`], { timeoutMs: 20000 });
  assert.ok(url.status === null || (url.status >= 400 && url.status < 500), `1 MiB URL: ${url.status}`);
  const many = await raw(port, [`GET /health HTTP/1.1\r\n${'X-A: b\r\n'.repeat(20000)}\r\n`], { timeoutMs: 20000 });
  assert.ok(many.status === null || (many.status >= 400 && many.status < 500), `20000 headers: ${many.status}`);
  await assertAlive('after huge strings');
});

test('wrong types: 400 naming the field', async () => {
  const completion = [
    ['prompt', 123], ['prompt', {}], ['prompt', true], ['prompt', []], ['prompt', [[]]], ['prompt', ['a', 'b']],
    ['max_tokens', 'lots'], ['max_tokens', [16]], ['max_tokens', true], ['max_tokens', {}],
    ['temperature', 'hot'], ['temperature', -0.5], ['temperature', 3], ['temperature', [1]],
    ['top_p', 'x'], ['top_p', 1.5], ['top_k', 'x'], ['top_k', 2.5], ['min_p', 'x'], ['min_p', -1],
    ['seed', 'x'], ['seed', 1.5], ['presence_penalty', 'x'], ['presence_penalty', 5], ['frequency_penalty', 'x'],
    ['frequency_penalty', -3], ['logit_bias', []], ['logit_bias', 'x'], ['logit_bias', { abc: 1 }], ['logit_bias', { 5: 'x' }],
    ['logit_bias', { 99999: 1 }], ['logit_bias', { 5: 1000 }], ['logit_bias', { '-1': 1 }],
    ['logprobs', 'yes'], ['logprobs', 6], ['logprobs', -1], ['stop', 5], ['stop', [5]], ['stop', { a: 1 }],
    ['stop', ['a', 'b', 'c', 'd', 'e']], ['n', '2'], ['n', 0], ['n', 1000], ['n', 1.5], ['stream', 'yes'], ['stream', 1],
    ['stream_options', 5], ['stream_options', { include_usage: 'yes' }], ['ignore_eos', 'x'], ['user', 5], ['user', {}],
    ['model', 5], ['echo', 'x'],
  ];
  for (const [field, value] of completion) {
    const body = { prompt: 'Once', max_tokens: 2, [field]: value };
    const r = await post(port, COMPLETIONS, body);
    const e = assertError(r, 400, `${field}=${JSON.stringify(value)}`);
    assert.ok(e.message.includes(field.split('.')[0]), `${field}=${JSON.stringify(value)}: message does not name the field: ${e.message}`);
    assert.ok(e.param === null || e.param.startsWith(field.split('.')[0]), `${field}: param ${e.param}`);
  }
  const msgs = [{ role: 'user', content: 'hi' }];
  const chat = [
    ['messages', 'hello'], ['messages', []], ['messages', {}], ['messages', [5]], ['messages', [{ role: 5, content: 'x' }]],
    ['messages', [{ role: 'wizard', content: 'x' }]], ['messages', [{ content: 'x' }]], ['messages', [{ role: 'user', content: 5 }]],
    ['messages', [{ role: 'user', content: [{ type: 'image_url', image_url: 'x' }] }]], ['messages', [{ role: 'user', content: [5] }]],
    ['messages', [{ role: 'user' }]], ['max_completion_tokens', 'x'], ['max_completion_tokens', -1], ['max_tokens', 'x'],
    ['logprobs', 'x'], ['logprobs', 3], ['top_logprobs', 'x'], ['top_logprobs', 21], ['temperature', 'x'], ['n', 'x'],
    ['stop', 7], ['stream', 'x'], ['seed', 'x'], ['logit_bias', 'x'],
  ];
  for (const [field, value] of chat) {
    const body = { messages: msgs, max_completion_tokens: 2, [field]: value };
    const r = await post(port, CHAT, body);
    const e = assertError(r, 400, `chat ${field}=${JSON.stringify(value)}`);
    assert.ok(e.message.includes(field), `chat ${field}=${JSON.stringify(value)}: message does not name the field: ${e.message}`);
  }
  // top_logprobs without logprobs.
  const tl = await post(port, CHAT, { messages: msgs, top_logprobs: 2 });
  assert.match(assertError(tl, 400).message, /top_logprobs/);
  // Missing required fields.
  assert.match(assertError(await post(port, COMPLETIONS, { max_tokens: 2 }), 400).message, /prompt/);
  assert.match(assertError(await post(port, CHAT, { max_completion_tokens: 2 }), 400).message, /messages/);
  // tokenize / detokenize.
  assert.match(assertError(await post(port, '/tokenize', { content: 5 }), 400).message, /content/);
  assert.match(assertError(await post(port, '/tokenize', {}), 400).message, /content/);
  assert.match(assertError(await post(port, '/detokenize', { tokens: 'x' }), 400).message, /tokens/);
  assert.match(assertError(await post(port, '/detokenize', { tokens: [1, 99999] }), 400).message, /tokens/);
  assert.match(assertError(await post(port, '/detokenize', { tokens: [1, -5] }), 400).message, /tokens/);
  assert.match(assertError(await post(port, '/detokenize', { tokens: ['a'] }), 400).message, /tokens/);
  await assertAlive('after wrong types');
});

test('invalid UTF-8 in the prompt and in messages: 400', async () => {
  const bad = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.from([0xe2, 0x82])];
  for (const b of bad) {
    const p = Buffer.concat([Buffer.from('{"prompt":"Once '), b, Buffer.from(' upon","max_tokens":2}')]);
    await sendRaw(COMPLETIONS, p, `prompt with ${b.toString('hex')}`);
    const m = Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"hi '), b, Buffer.from('"}],"max_completion_tokens":2}')]);
    await sendRaw(CHAT, m, `message with ${b.toString('hex')}`);
    const t = Buffer.concat([Buffer.from('{"content":"x'), b, Buffer.from('"}')]);
    await sendRaw('/tokenize', t, `tokenize ${b.toString('hex')}`);
  }
  // An escaped lone surrogate is not a character: refused or replaced, never a crash.
  const s = await post(port, COMPLETIONS, '{"prompt":"Once \\ud800 upon","max_tokens":2}');
  assert.ok(s.status === 200 || s.status === 400, `lone surrogate: ${s.status} ${s.text}`);
  // Valid multi-byte text is fine.
  const ok = await post(port, COMPLETIONS, { prompt: 'Once upon a time, 猫 and 🐱 é', max_tokens: 4 });
  assert.equal(ok.status, 200, ok.text);
  await assertAlive('after invalid UTF-8');
});

test('unknown routes 404, wrong methods 405', async () => {
  for (const [m, p] of [['GET', '/v2/models'], ['POST', '/v1/nothing'], ['GET', '/v1/completions/extra'], ['GET', '/'],
    ['GET', '/v1'], ['POST', '/v1/chat/completion'], ['GET', '/health/x'], ['GET', '/v1/models/x/y']]) {
    const r = await request(port, m, p, m === 'POST' ? { prompt: 'x' } : undefined);
    assertError(r, 404, `${m} ${p}`);
  }
  const up = await request(port, 'GET', '/../../etc/passwd');
  assertError(up, up.status === 400 ? 400 : 404, 'GET /../../etc/passwd');
  for (const [m, p] of [['GET', COMPLETIONS], ['PUT', CHAT], ['POST', '/health'], ['DELETE', '/v1/models'],
    ['POST', '/metrics'], ['GET', '/tokenize'], ['GET', '/detokenize'], ['PATCH', COMPLETIONS]]) {
    const r = await request(port, m, p, m === 'GET' || m === 'DELETE' ? undefined : { prompt: 'x' });
    assertError(r, 405, `${m} ${p}`);
  }
  // Nonsense on the wire.
  const junk = await raw(port, ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n'], { timeoutMs: 20000 });
  assert.ok(junk.status === null || junk.status === 400, `junk: ${junk.text.slice(0, 100)}`);
  const bad = await raw(port, ['GET /health HTTP/9.9\r\n\r\n'], { timeoutMs: 20000 });
  assert.ok(bad.status === null || (bad.status >= 400 && bad.status < 600), `HTTP/9.9: ${bad.text.slice(0, 100)}`);
  const cl = await raw(port, [`POST ${COMPLETIONS} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`], { timeoutMs: 20000 });
  assert.equal(cl.status, 400, `Content-Length -5: ${cl.text.slice(0, 100)}`);
  const cl2 = await raw(port, [`POST ${COMPLETIONS} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n`], { timeoutMs: 20000 });
  assert.ok(cl2.status === 400 || cl2.status === 413, `huge Content-Length: ${cl2.text.slice(0, 100)}`);
  await assertAlive('after bad routes');
});

test('keep-alive: several requests on one connection', async () => {
  const body = JSON.stringify(greedyBody());
  const post1 = `POST ${COMPLETIONS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const r = await raw(port, [
    'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { delay: 300 },
    post1, { delay: 1500 },
    'GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  ], { timeoutMs: 30000 });
  const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
  assert.deepEqual(statuses, [200, 200, 200], r.text.slice(0, 500));
  assert.ok(r.text.includes(JSON.stringify(ref.text).slice(1, -1)), 'the completion on a reused connection');
  assert.ok(r.closed, 'Connection: close was not honoured');
});

test('slow senders are dropped (--timeout 2) while others are served', async () => {
  const head = `POST ${COMPLETIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n`;
  const slowloris = [head + 'Content-Length: 200\r\n\r\n'];
  for (let i = 0; i < 200; i++) slowloris.push({ delay: 250 }, ' ');
  const t0 = Date.now();
  const slow = [
    raw(port, [], { timeoutMs: 30000 }), // connects, sends nothing
    raw(port, [head], { timeoutMs: 30000 }), // half the headers, then nothing
    raw(port, ['GET /health HTTP/1.1\r\nHo'], { timeoutMs: 30000 }),
    raw(port, [head + 'Content-Length: 50\r\n\r\n'], { timeoutMs: 30000 }), // headers, no body
    raw(port, [head + 'Content-Length: 50\r\n\r\n{"prompt":'], { timeoutMs: 30000 }), // part of the body
    raw(port, slowloris, { timeoutMs: 30000 }), // a byte every 250 ms: 50 s for the body
  ];
  // Headers that trickle in: a header line every 250 ms, forever.
  const trickle = ['GET /health HTTP/1.1\r\n'];
  for (let i = 0; i < 200; i++) trickle.push({ delay: 250 }, `X-Slow-${i}: 1\r\n`);
  slow.push(raw(port, trickle, { timeoutMs: 30000 }));
  await sleep(300);
  // Meanwhile a normal request is served.
  await assertAlive('while slow senders are connected');
  const h = await get(port, '/health');
  assert.equal(h.status, 200);
  const res = await Promise.all(slow);
  const names = ['silent', 'half the headers', 'half a header line', 'headers, no body', 'part of the body',
    'slowloris body (a byte every 250 ms)', 'trickled headers (a line every 250 ms)'];
  const bad = [];
  for (const [i, r] of res.entries()) {
    if (!r.closed || r.ms >= 25000) bad.push(`${names[i]}: ${r.closed ? `dropped only after ${r.ms} ms` : 'not dropped within 30 s'}`);
    else if (r.status !== null && ![400, 408].includes(r.status)) bad.push(`${names[i]}: answered ${r.status}`);
  }
  assert.deepEqual(bad, [], `slow senders with --timeout 2:\n${bad.join('\n')}`);
  assert.ok(Date.now() - t0 < 30000);
});

// Sums of the server's gauges.
async function load() {
  const { samples } = await metrics(port);
  const sum = (name) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
  return {
    running: sum('qiao_requests_running'), queued: sum('qiao_requests_queued'), kvUsed: sum('qiao_kv_blocks_used'),
    deviceRunning: sum('qiao_device_requests_running'), samples,
  };
}

async function waitIdle(what, ms = 3000) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    last = await load();
    if (last.running === 0 && last.queued === 0 && last.kvUsed === 0 && last.deviceRunning === 0) return;
    await sleep(50);
  }
  assert.fail(`${what}: not idle ${ms} ms later: running ${last.running}, queued ${last.queued}, KV blocks used ${last.kvUsed}, device running ${last.deviceRunning}`);
}

const LONG = { prompt: REF_PROMPT, max_tokens: 400, temperature: 0, ignore_eos: true };

// A request whose connection we can drop at any moment.
function openRequest(body, { streamIt = false } = {}) {
  const payload = Buffer.from(JSON.stringify({ ...body, stream: streamIt }));
  const req = http.request({
    host: '127.0.0.1', port, method: 'POST', path: COMPLETIONS, agent: false,
    headers: { 'Content-Type': 'application/json', 'Content-Length': payload.length },
  });
  const opened = { req, status: undefined };
  const firstChunk = new Promise((resolve, reject) => {
    req.on('response', (res) => {
      opened.status = res.statusCode;
      res.once('data', () => resolve(res.statusCode));
      res.on('error', () => {});
    });
    req.on('error', (e) => { if (!req.destroyed) reject(e); });
  });
  req.on('error', () => {});
  req.end(payload);
  opened.firstChunk = firstChunk;
  return opened;
}

test('a client that disconnects mid-stream frees its slot within 3 s', async () => {
  await waitIdle('before');
  const a = openRequest(LONG, { streamIt: true });
  assert.equal(await a.firstChunk, 200);
  assert.ok((await load()).running >= 1);
  a.req.destroy();
  await waitIdle('after a mid-stream disconnect');
  // Through the stream helper too: abort after the first chunk.
  const s = await stream(port, COMPLETIONS, { ...LONG, stream: true }, {}, { onEvent: () => 'abort' });
  assert.ok(s.aborted);
  await waitIdle('after an abort after the first chunk');
});

test('a client that disconnects while its non-streaming request runs frees the slot within 3 s', async () => {
  const a = openRequest(LONG);
  await pollUntil(async () => (await load()).running === 1, 10000, 'the request to run');
  a.req.destroy();
  await waitIdle('after a non-streaming disconnect');
});

test('a client that disconnects while queued leaves the queue within 3 s', async () => {
  const a = openRequest(LONG, { streamIt: true });
  const b = openRequest(LONG, { streamIt: true });
  assert.equal(await a.firstChunk, 200);
  assert.equal(await b.firstChunk, 200);
  const q = openRequest(LONG, { streamIt: true });
  const q2 = openRequest(LONG);
  await pollUntil(async () => (await load()).queued === 2, 10000, 'two queued');
  q.req.destroy();
  q2.req.destroy();
  const t0 = Date.now();
  await pollUntil(async () => (await load()).queued === 0, 3000, 'the queue to empty after the disconnects', 50);
  assert.equal((await load()).running, 2, 'the running ones keep running');
  assert.ok(Date.now() - t0 < 3000);
  a.req.destroy();
  b.req.destroy();
  await waitIdle('after dropping the running ones');
});

test('a flood past the queue limit: every request gets 200 or 503 with Retry-After', async () => {
  const ref32 = (await post(port, COMPLETIONS, { prompt: REF_PROMPT, max_tokens: 32, temperature: 0, ignore_eos: true })).json.choices[0].text;
  assert.ok(ref.text.startsWith(ref32));
  const body = { prompt: REF_PROMPT, max_tokens: 32, temperature: 0, ignore_eos: true };
  const jobs = [];
  for (let i = 0; i < 40; i++) {
    if (i % 2) jobs.push(stream(port, COMPLETIONS, { ...body, stream: true, stream_options: { include_usage: true } }, {}, { timeoutMs: 120000 }));
    else jobs.push(post(port, COMPLETIONS, body, {}, { timeoutMs: 120000 }));
  }
  // Some that give up at once, while queued or running.
  const quitters = [];
  for (let i = 0; i < 4; i++) {
    const q = openRequest(LONG, { streamIt: i % 2 === 0 });
    quitters.push(q);
    setTimeout(() => q.req.destroy(), 20 + 30 * i);
  }
  const results = await Promise.all(jobs);
  let ok = 0;
  let busy = 0;
  for (const [i, r] of results.entries()) {
    if (r.status === 503) {
      busy++;
      const e = assertError({ ...r, text: r.text ?? r.raw }, 503, `flood ${i}`);
      assert.ok(e.message.length > 0);
      assert.ok(assertRetryAfter(r.headers, `flood ${i}`) >= 1);
      continue;
    }
    assert.equal(r.status, 200, `flood ${i}: ${r.text || r.raw}`);
    ok++;
    if (r.events) {
      const s = checkStream(r, { includeUsage: true, what: `flood ${i}` });
      assert.equal(s.texts[0], ref32);
      assertUsage(s.usage, 5, 32);
    } else {
      assert.equal(r.json.choices[0].text, ref32);
      assertUsage(r.json.usage, 5, 32);
    }
  }
  // The quitters arrive with the flood: one that was not refused (no 503
  // before it left) held one of the 6 places while the flood arrived.
  const placedQuitters = quitters.filter((q) => q.status !== 503).length;
  assert.ok(ok + placedQuitters >= 6,
    `only ${ok} of 40 were served, and ${placedQuitters} quitters held a place (2 slots + 4 queued must be)`);
  assert.ok(busy >= 1, `no 503 among 40 concurrent requests with 2 slots and a queue of 4 (${ok} served)`);
  const { samples } = await metrics(port);
  assert.ok(metricSum(samples, 'qiao_requests_rejected_total', { reason: 'queue_full' }) >= busy);
});

test('after the traffic: idle, and still correct', async () => {
  await waitIdle('after all the traffic');
  const l = await load();
  // Cached prefix blocks may remain; none is in use.
  assert.equal(l.kvUsed, 0);
  await assertAlive('at the end');
  const s = checkStream(await stream(port, COMPLETIONS, greedyBody({ stream: true })));
  assert.equal(s.texts[0], ref.text);
  const c = await post(port, CHAT, { messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 8 });
  assert.equal(c.status, 200, c.text);
  assert.equal((await get(port, '/health')).status, 200);
});
