// serve_tenants: API keys and tenants. The keys file must be private (chmod
// 600) or the server refuses to start naming it; every route but /health
// answers 401 without a valid key (a route-table sweep, unknown routes
// included); keys never reach the log; tenants of equal weight share the
// slots fairly (a quiet tenant is not stuck behind a flooding one, as it
// would be with FIFO); a tokens-per-minute limit gives 429 + Retry-After.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  REF_PROMPT, assertError, assertRetryAfter, get, greedyBody, greedyReference, metricSum, metrics, post, request,
  startFailing, startServer, tmpDir, writeKeys,
} from './lib/serve.mjs';

const ref = greedyReference();
const KEY_A = 'sk-tenant-a-4b1d9e7f20c35a86';
const KEY_A2 = 'sk-tenant-a-second-7e21c0d9';
const KEY_B = 'sk-tenant-b-93c07a5e1fd24b68';
const KEY_R = 'sk-tenant-r-c2f8e61a0b4d3975';
const ALL_KEYS = [KEY_A, KEY_A2, KEY_B, KEY_R];
const TPM = 100;
const dir = tmpDir('tenants');
const keysLines = [
  '# two tenants of equal weight, and one with a token rate',
  `${KEY_A} alpha weight=1`,
  `${KEY_A2} alpha`,
  '',
  `${KEY_B} beta weight=1`,
  `${KEY_R}\t rated   tpm=${TPM}`,
];
let server;
let port;
const auth = (key) => ({ Authorization: `Bearer ${key}` });

function assertNoKeys(text, what) {
  for (const k of ALL_KEYS) assert.ok(!text.includes(k), `${what}: a key appears: ${k}`);
  // Nor a long piece of one.
  for (const k of ALL_KEYS) assert.ok(!text.includes(k.slice(-12)), `${what}: the end of a key appears`);
}

before(async () => {
  const keys = writeKeys(dir, keysLines);
  // The CPU backend slowed down by 100 us an op (the faulty test plugin), so
  // that the flooding tenant's requests are still queued when the quiet one
  // arrives, whatever the build's speed.
  const plugin = process.env.QIAO_FAULTY_PLUGIN;
  if (!plugin || !fs.existsSync(plugin)) throw new Error(`QIAO_FAULTY_PLUGIN (${plugin}) is not a file`);
  server = await startServer(['--device', plugin, '--slots', '2', '--max-queue', '64', '--api-keys', keys],
    { env: { QIAO_FAULTY_OP_DELAY_US: '100' } });
  port = server.port;
});
after(async () => {
  if (server) {
    await server.stop();
    assertNoKeys(server.stderr, 'server log');
  }
});

test('a keys file readable by group or others is refused, naming the file', async () => {
  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o602]) {
    const d = tmpDir('keys-mode');
    const p = writeKeys(d, keysLines, mode);
    assert.equal(fs.statSync(p).mode & 0o777, mode);
    const r = await startFailing(['--api-keys', p]);
    assert.notEqual(r.code, 0, `mode ${mode.toString(8)}: exit ${r.code}`);
    assert.equal(r.signal, null, `mode ${mode.toString(8)}: killed by ${r.signal}:\n${r.stderr}`);
    assert.ok(r.stderr.includes(p), `mode ${mode.toString(8)}: the message does not name ${p}:\n${r.stderr}`);
    assert.ok(!/listening on/.test(r.stderr), 'it started listening');
    assertNoKeys(r.stderr, 'refusal message');
  }
});

test('a malformed keys file is refused, naming the file', async () => {
  const cases = [
    ['sk-lonely-key-without-tenant'],
    [`${KEY_A} alpha max_running=lots`],
    [`${KEY_A} alpha colour=blue`],
    [`${KEY_A} alpha`, `${KEY_A} beta`], // the same key twice
  ];
  for (const lines of cases) {
    const d = tmpDir('keys-bad');
    const p = writeKeys(d, lines);
    const r = await startFailing(['--api-keys', p]);
    assert.notEqual(r.code, 0, `${JSON.stringify(lines)}: exit ${r.code}`);
    assert.equal(r.signal, null, r.stderr);
    assert.ok(r.stderr.includes(p), `${JSON.stringify(lines)}: the message does not name the file:\n${r.stderr}`);
    assertNoKeys(r.stderr, 'malformed keys message');
  }
  const missing = path.join(dir, 'no-such-keys.txt');
  const r = await startFailing(['--api-keys', missing]);
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes(missing), r.stderr);
});

const ROUTES = [
  ['GET', '/v1/models'], ['POST', '/v1/completions', { prompt: 'x', max_tokens: 1 }],
  ['POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }], ['GET', '/metrics'],
  ['POST', '/tokenize', { content: 'x' }], ['POST', '/detokenize', { tokens: [1] }],
  ['GET', '/v1/unknown'], ['POST', '/nothing/here', {}], ['GET', '/'], ['GET', '/v1/completions'],
  ['DELETE', '/v1/models'], ['GET', '/v1/models/x'],
];

test('401 on every route but /health without a valid key', async () => {
  const bad = [
    {}, auth('sk-wrong-000000000000000000'), { Authorization: 'Bearer ' }, { Authorization: 'Bearer' },
    { Authorization: KEY_A }, { Authorization: `Basic ${Buffer.from(`${KEY_A}:`).toString('base64')}` },
    auth(KEY_A.slice(0, -1)), auth(KEY_A + 'x'), auth(KEY_A.toUpperCase()), auth(`${KEY_A} ${KEY_B}`),
    { 'X-Api-Key': 'sk-wrong-000000000000000000' }, { 'X-Api-Key': '' },
    auth('a'.repeat(10000)),
  ];
  for (const [method, p, body] of ROUTES) {
    for (const h of bad) {
      const r = await request(port, method, p, body, h);
      const e = assertError(r, 401, `${method} ${p} with ${JSON.stringify(h).slice(0, 80)}`);
      assertNoKeys(r.text, `${method} ${p} 401 body`);
      assert.ok(e.message.length > 0);
    }
  }
  for (const h of [{}, auth('sk-wrong-000000000000000000')]) {
    const r = await get(port, '/health', h);
    assert.equal(r.status, 200, `/health must stay public: ${r.text}`);
  }
});

test('a valid key opens every route, by Authorization or X-Api-Key', async () => {
  for (const h of [auth(KEY_A), auth(KEY_A2), auth(KEY_B), { 'X-Api-Key': KEY_B }]) {
    assert.equal((await get(port, '/v1/models', h)).status, 200);
    assert.equal((await get(port, '/metrics', h)).status, 200);
    const t = await post(port, '/tokenize', { content: REF_PROMPT }, h);
    assert.equal(t.status, 200);
    assert.deepEqual(t.json.tokens, [403, 407, 261, 378]); // no BOS, as llama-server's /tokenize
    const d = await post(port, '/detokenize', { tokens: ref.ids }, h);
    assert.equal(d.status, 200);
    const c = await post(port, '/v1/completions', greedyBody(), h);
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.choices[0].text, ref.text);
    // An authorized request to an unknown route is a 404, not a 401.
    assertError(await get(port, '/v1/unknown', h), 404, 'unknown route with a key');
    assertError(await get(port, '/v1/completions', h), 405, 'wrong method with a key');
  }
  assertNoKeys(server.stderr, 'log so far');
});

test('fairness: a quiet tenant is served alongside a flooding one (equal weights)', async () => {
  const body = { prompt: REF_PROMPT, max_tokens: 24, temperature: 0, ignore_eos: true };
  const order = [];
  const send = (tenant, key, i) => post(port, '/v1/completions', body, auth(key), { timeoutMs: 170000 }).then((r) => {
    assert.equal(r.status, 200, `${tenant}${i}: ${r.text}`);
    assert.equal(r.json.usage.completion_tokens, 24);
    order.push(`${tenant}${i}`);
  });
  const finished = async (tenant) => metricSum((await metrics(port, auth(KEY_A))).samples, 'qiao_requests_finished_total',
    { tenant, finish: 'length' });
  const before = { alpha: await finished('alpha'), beta: await finished('beta') };
  const jobs = [];
  for (let i = 0; i < 20; i++) jobs.push(send('A', i % 2 ? KEY_A : KEY_A2, i));
  // B arrives once A's 20 are in (2 running, the rest queued).
  const t0 = Date.now();
  for (;;) {
    const { samples } = await metrics(port, auth(KEY_A));
    const inFlight = metricSum(samples, 'qiao_requests_running', { tenant: 'alpha' }) +
      metricSum(samples, 'qiao_requests_queued', { tenant: 'alpha' });
    if (inFlight + order.length >= 20) break;
    assert.ok(Date.now() - t0 < 30000, 'A\'s 20 requests did not arrive');
    await new Promise((r) => setTimeout(r, 20));
  }
  const aDoneBeforeB = order.length;
  for (let i = 0; i < 4; i++) jobs.push(send('B', KEY_B, i));
  await Promise.all(jobs);
  const aPos = order.map((x, k) => (x.startsWith('A') ? k : -1)).filter((k) => k >= 0);
  const lastB = Math.max(...order.map((x, k) => (x.startsWith('B') ? k : -1)));
  // FIFO would finish B after all of A's 20; fair sharing interleaves them.
  assert.ok(lastB < aPos[11], `B's last request finished after A's 12th (A had finished ${aDoneBeforeB} when B arrived): ${order.join(' ')}`);
  console.log(`completion order (A had finished ${aDoneBeforeB} when B arrived): ${order.join(' ')}`);
  assert.equal(await finished('alpha') - before.alpha, 20);
  assert.equal(await finished('beta') - before.beta, 4);
});

test('tokens per minute: 429 with Retry-After once the tenant has used its tokens', async () => {
  const body = { prompt: REF_PROMPT, max_tokens: 40, temperature: 0, ignore_eos: true };
  let served = 0;
  let refused = null;
  for (let i = 0; i < 6 && !refused; i++) {
    const r = await post(port, '/v1/completions', body, auth(KEY_R));
    if (r.status === 429) {
      refused = r;
      break;
    }
    assert.equal(r.status, 200, r.text);
    served += r.json.usage.total_tokens;
  }
  assert.ok(refused, `never refused after ${served} tokens with tpm=${TPM}`);
  assert.ok(served >= 45, 'refused before any request was served');
  assert.ok(served <= TPM + 45, `served ${served} tokens before refusing (tpm=${TPM})`);
  const e = assertError(refused, 429, 'tpm');
  assert.ok(e.message.length > 0);
  const ra = assertRetryAfter(refused.headers, 'tpm 429');
  assert.ok(ra >= 1 && ra <= 60, `Retry-After ${ra}`);
  // Streaming requests are refused the same way, before any event.
  const s = await post(port, '/v1/completions', { ...body, stream: true }, auth(KEY_R));
  assertError(s, 429, 'tpm stream');
  assertRetryAfter(s.headers, 'tpm stream 429');
  // Other tenants are not limited.
  const a = await post(port, '/v1/completions', greedyBody(), auth(KEY_A));
  assert.equal(a.status, 200);
  assert.equal(a.json.choices[0].text, ref.text);
  const { samples } = await metrics(port, auth(KEY_A));
  assert.ok(metricSum(samples, 'qiao_requests_rejected_total', { tenant: 'rated', reason: 'tenant_rate' }) >= 2);
});
