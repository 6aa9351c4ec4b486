// scaleout_headers: the two headers `qiao serve` offers load balancers, on
// one server (no balancer): X-Qiao-Replica on every response (the
// --replica-name, default HOST:PORT; bad names refuse to start) and
// X-Qiao-Session checked as untrusted input (bounded length and charset,
// else 400 invalid_session_header; an empty one counts as none) and logged.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { REF_PROMPT, assertError, get, post, raw, startFailing, startServer, stream } from '../serve/lib/serve.mjs';

let named;
let unnamed;
before(async () => {
  [named, unnamed] = await Promise.all([startServer(['--replica-name', 'rack2.node-7:8080']), startServer()]);
});
after(async () => {
  if (named) await named.stop();
  if (unnamed) await unnamed.stop();
});

test('X-Qiao-Replica names the process on every kind of response', async () => {
  const port = named.port;
  const responses = {
    health: await get(port, '/health'),
    models: await get(port, '/v1/models'),
    notFound: await get(port, '/nope'),
    badMethod: await get(port, '/v1/completions'),
    completion: await post(port, '/v1/completions', { prompt: REF_PROMPT, max_tokens: 2 }),
    badRequest: await post(port, '/v1/completions', { prompt: REF_PROMPT, max_tokens: -1 }),
    stream: await stream(port, '/v1/completions', { prompt: REF_PROMPT, max_tokens: 2, stream: true }),
  };
  for (const [what, r] of Object.entries(responses)) assert.equal(r.headers['x-qiao-replica'], 'rack2.node-7:8080', what);
  assert.equal(responses.completion.status, 200);
  assert.equal(responses.badRequest.status, 400);
});

test('X-Qiao-Replica defaults to HOST:PORT', async () => {
  const r = await get(unnamed.port, '/health');
  assert.equal(r.headers['x-qiao-replica'], `127.0.0.1:${unnamed.port}`);
});

test('a bad --replica-name refuses to start, naming the flag', async () => {
  for (const bad of ['', 'a b', 'x'.repeat(65), 'r1\r\nX-Evil: 1', 'réplica', 'a;b']) {
    const r = await startFailing(['--replica-name', bad]);
    assert.equal(r.code, 2, `--replica-name ${JSON.stringify(bad)}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /^error: --replica-name: 1 to 64 characters/m, JSON.stringify(bad));
  }
  const ok = await startServer(['--replica-name', 'x'.repeat(64)]);
  assert.equal((await get(ok.port, '/health')).headers['x-qiao-replica'], 'x'.repeat(64));
  await ok.stop();
});

const body = { prompt: REF_PROMPT, max_tokens: 2 };

test('valid X-Qiao-Session values are accepted and logged', async () => {
  const longest = 'Aa0-._~:+/=@'.repeat(11).slice(0, 128);
  for (const key of ['c', 'conversation-42', '3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b', 'dXNlcjo0Mg==', longest]) {
    const r = await post(unnamed.port, '/v1/completions', body, { 'X-Qiao-Session': key });
    assert.equal(r.status, 200, `${JSON.stringify(key)}: ${r.text}`);
  }
  // An empty value is no session (balancers see it so too).
  assert.equal((await post(unnamed.port, '/v1/completions', body, { 'X-Qiao-Session': '' })).status, 200);
  const lines = unnamed.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.session === 'conversation-42' && l.status === 200), 'no log line with "session"');
  assert.ok(lines.some((l) => l.session === longest));
});

test('invalid X-Qiao-Session values get 400 invalid_session_header', async () => {
  for (const key of ['x'.repeat(129), 'a b', 'a,b', '"quoted"', 'semi;colon', 'k\u00e9y', '<script>', 'x'.repeat(100000)]) {
    const r = await post(unnamed.port, '/v1/completions', body, { 'X-Qiao-Session': key });
    if (key.length > 50000 && r.status === 431) continue; // the HTTP layer's own header limit
    const e = assertError(r, 400, JSON.stringify(key.slice(0, 40)));
    assert.equal(e.code, 'invalid_session_header');
    assert.match(e.message, /X-Qiao-Session must be 1 to 128 characters/);
  }
  // Raw bytes node:http would not send: control characters and invalid UTF-8.
  for (const bytes of [Buffer.from([0x61, 0x01, 0x62]), Buffer.from([0x61, 0xff, 0xfe]), Buffer.from([0x61, 0x7f])]) {
    const head = Buffer.from(`GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Qiao-Session: `, 'latin1');
    const r = await raw(unnamed.port, [Buffer.concat([head, bytes, Buffer.from('\r\n\r\n')])]);
    assert.ok(r.status === 400, `bytes ${bytes.toString('hex')}: ${r.text.slice(0, 300)}`);
  }
  // The server is fine afterwards.
  assert.equal((await get(unnamed.port, '/health')).status, 200);
});
