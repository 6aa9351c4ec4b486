// scaleout_nginx / scaleout_haproxy: two `qiao serve` replicas behind the
// balancer of examples/scale-out/ (nginx.conf or haproxy.cfg, as shipped),
// driven through it with the official `openai` client:
//  - /health through the balancer;
//  - a completion and a stream (the stream's chunks arrive spread over the
//    generation, not in one buffered lump);
//  - X-Qiao-Session keeps a conversation (completions, and a streamed chat)
//    on one replica (X-Qiao-Replica says which), so its later turns hit the
//    prefix cache; requests without a session reach both replicas;
//  - SIGKILL of the replica a stream and a completion are running on: both
//    fail as client errors within seconds, and every later request succeeds
//    on the other replica;
//  - that replica restarted on its port gets its sessions back;
//  - SIGTERM drains a replica: its running stream finishes, requests meanwhile
//    go to the other one, exit 0.
// Usage (CTest, tests/scaleout/CMakeLists.txt): node scaleout.test.mjs nginx|haproxy
// The replicas run on the CPU backend slowed by QIAO_FAULTY_OP_DELAY_US (the
// faulty test plugin), so a generation takes long enough to observe and to
// interrupt in any build. Exits 77 (skipped) when the balancer is not installed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { findBinary, startBalancer } from './balancer.mjs';
import {
  CHAT_TEMPLATE, REF_PROMPT, assertCleanStderr, get, greedyReference, metricSum, metrics, openaiModule, pollUntil, startServer, tail, withTimeout,
} from '../serve/lib/serve.mjs';

const kind = process.argv[2];
if (kind !== 'nginx' && kind !== 'haproxy') {
  console.error('usage: node scaleout.test.mjs nginx|haproxy');
  process.exit(2);
}
if (!findBinary(kind)) {
  console.log(`${kind} is not installed (scripts/deps.sh installs it): skipped`);
  process.exit(77);
}

const { OpenAI } = openaiModule();
const ref = greedyReference();
const MODEL = 'stories260K';
const OP_DELAY_US = '200'; // about 20 ms a token in a Release build

let replicas = {}; // name -> server
let lb;
let client;

// maxRetries 0: every failure shows.
function makeClient() {
  // As in tests/serve/openai.test.mjs: Node 18's keep-alive agent breaks openai 4.x streams.
  const opts = { baseURL: `http://127.0.0.1:${lb.port}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 };
  if (Number(process.versions.node.split('.')[0]) < 20) opts.httpAgent = new http.Agent({ keepAlive: false });
  return new OpenAI(opts);
}

// A completion through the balancer: { data, replica } (replica: X-Qiao-Replica).
async function complete(body, session) {
  const headers = session ? { 'X-Qiao-Session': session } : {};
  const { data, response } = await client.completions.create({ model: MODEL, ...body }, { headers }).withResponse();
  return { data, replica: response.headers.get('x-qiao-replica') };
}

// A stream through the balancer; onChunk(chunk, ms since the request) per chunk.
async function streamed(body, session, onChunk = () => {}) {
  const headers = session ? { 'X-Qiao-Session': session } : {};
  const t0 = Date.now();
  const { data, response } = await client.completions.create({ model: MODEL, ...body, stream: true }, { headers }).withResponse();
  const out = { replica: response.headers.get('x-qiao-replica'), text: '', times: [], finish: null };
  for await (const chunk of data) {
    const ms = Date.now() - t0;
    onChunk(chunk, ms, out);
    for (const c of chunk.choices) {
      out.text += c.text;
      out.times.push(ms);
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

function diagnostics() {
  let s = `--- ${kind} ---\n${lb ? lb.log() : '(not started)'}\n`;
  for (const [name, r] of Object.entries(replicas)) s += `--- replica ${name} ---\n${tail(r.stderr, 3000)}\n`;
  return s;
}

before(async () => {
  const plugin = process.env.QIAO_FAULTY_PLUGIN;
  if (!plugin || !fs.existsSync(plugin)) throw new Error(`QIAO_FAULTY_PLUGIN (${plugin}) is not a file`);
  const args = (name) => ['--device', plugin, '--slots', '4', '--model-name', MODEL, '--chat-template', CHAT_TEMPLATE,
    '--replica-name', name];
  const env = { QIAO_FAULTY_OP_DELAY_US: OP_DELAY_US };
  const [a, b] = await Promise.all([startServer(args('a'), { env }), startServer(args('b'), { env })]);
  replicas = { a, b };
  lb = await startBalancer(kind, [a.port, b.port]);
  client = makeClient();
});

after(async () => {
  if (lb) await lb.stop();
  for (const r of Object.values(replicas)) {
    assertCleanStderr(r);
    if (!r.exited) await r.stop();
  }
});

test('GET /health through the balancer', async () => {
  const r = await get(lb.port, '/health');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'ok');
  assert.ok(['a', 'b'].includes(r.headers['x-qiao-replica']), `X-Qiao-Replica: ${r.headers['x-qiao-replica']}`);
});

test('a completion through the balancer is llama2.c\'s greedy text', async () => {
  const { data, replica } = await complete({ prompt: REF_PROMPT, max_tokens: 20, temperature: 0 });
  assert.ok(['a', 'b'].includes(replica), `X-Qiao-Replica: ${replica}`);
  assert.equal(data.usage.completion_tokens, 20);
  assert.ok(data.choices[0].text.length > 0 && ref.text.startsWith(data.choices[0].text),
    `not a prefix of llama2.c's greedy text: ${JSON.stringify(data.choices[0].text)}`);
});

test('a stream arrives token by token, not buffered', async () => {
  const s = await streamed({ prompt: REF_PROMPT, max_tokens: 30, temperature: 0, ignore_eos: true });
  assert.equal(s.finish, 'length');
  assert.ok(ref.text.startsWith(s.text), `stream text: ${JSON.stringify(s.text)}`);
  // Each token takes >= 20 ms here (the plugin's delay is a floor, however
  // busy the machine): unbuffered, the 30 chunks arrive one by one over more
  // than half a second; a buffering proxy hands them over in one lump at the
  // end (within a few ms).
  const spread = s.times[s.times.length - 1] - s.times[0];
  const gaps = s.times.slice(1).map((t, i) => t - s.times[i]);
  assert.ok(s.times.length >= 25, `${s.times.length} chunks`);
  assert.ok(spread >= 200 && gaps.filter((g) => g >= 5).length >= gaps.length / 2,
    `chunks not spread over the generation: arrived at ${s.times.join(',')} ms`);
});

// Session keys that land on each replica (the hash decides; one probe each).
async function sessionsPerReplica() {
  const found = {};
  for (let i = 0; i < 64 && Object.keys(found).length < 2; i++) {
    const key = `conversation-${i}`;
    const { replica } = await complete({ prompt: 'Tom', max_tokens: 1 }, key);
    if (!found[replica]) found[replica] = key;
  }
  assert.deepEqual(Object.keys(found).sort(), ['a', 'b'], `64 session keys all went to one replica: ${JSON.stringify(found)}`);
  return found;
}

let sessions;

test('one session stays on one replica and hits its prefix cache', async () => {
  sessions = await sessionsPerReplica();
  for (const [replica, key] of Object.entries(sessions)) {
    // A conversation: each turn's prompt is the last one, its answer and more.
    let prompt = `${REF_PROMPT} there was a little girl named Lily. She liked to play in the park with her friends. One day, ${key}`;
    for (let turn = 0; turn < 3; turn++) {
      const { data, replica: got } = await complete({ prompt, max_tokens: 8, temperature: 0 }, key);
      assert.equal(got, replica, `turn ${turn} of session ${key} went to ${got}, its first to ${replica}`);
      const cached = data.usage.prompt_tokens_details.cached_tokens;
      if (turn > 0) assert.ok(cached > 0, `turn ${turn} of ${key}: no prefix-cache hit: ${JSON.stringify(data.usage)}`);
      prompt += `${data.choices[0].text} Then she said hello.`;
    }
  }
});

test('a chat conversation, streamed, stays on its replica and hits its prefix cache', async () => {
  for (const [replica, key] of Object.entries(sessions)) {
    const messages = [
      { role: 'system', content: 'You tell short stories about a little girl named Lily and her dog.' },
      { role: 'user', content: `Tell me a story. ${key}` },
    ];
    for (let turn = 0; turn < 3; turn++) {
      const { data, response } = await client.chat.completions.create(
        { model: MODEL, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } },
        { headers: { 'X-Qiao-Session': key } }).withResponse();
      assert.equal(response.headers.get('x-qiao-replica'), replica, `turn ${turn} of ${key}`);
      let text = '';
      let usage = null;
      for await (const chunk of data) {
        for (const c of chunk.choices) text += c.delta.content || '';
        if (chunk.usage) usage = chunk.usage;
      }
      assert.ok(usage, `turn ${turn} of ${key}: no usage chunk`);
      if (turn > 0) assert.ok(usage.prompt_tokens_details.cached_tokens > 0, `turn ${turn} of ${key}: ${JSON.stringify(usage)}`);
      messages.push({ role: 'assistant', content: text }, { role: 'user', content: 'And then?' });
    }
  }
});

test('requests without a session reach both replicas', async () => {
  const seen = new Set();
  for (let i = 0; i < 8 && seen.size < 2; i++) seen.add((await complete({ prompt: 'Tom', max_tokens: 2 })).replica);
  assert.deepEqual([...seen].sort(), ['a', 'b']);
});

test('SIGKILL of a replica mid-stream: that stream fails fast, later requests succeed on the other', async () => {
  // A long completion and a long stream in b's session; at the stream's
  // first chunk, SIGKILL the replica it runs on (X-Qiao-Replica: b, unless
  // affinity is broken), with the completion still generating there.
  const key = sessions.b;
  const long = { prompt: REF_PROMPT, max_tokens: 400, temperature: 0, ignore_eos: true };
  const plain = complete(long, key).then((r) => ({ r }), (error) => ({ error, at: Date.now() }));
  await pollUntil(async () => metricSum((await metrics(replicas.b.port)).samples, 'qiao_requests_running') >= 1, 30000,
    'the completion to run on b');
  let victim = null;
  let killedAt = null;
  const t0 = Date.now();
  const outcome = await withTimeout(
    streamed(long, key, (chunk, ms, s) => {
      if (killedAt === null) {
        killedAt = ms;
        victim = s.replica;
        if (replicas[victim]) replicas[victim].proc.kill('SIGKILL');
      }
    }).then((s) => ({ s }), (error) => ({ error })),
    60000, () => `the stream on the killed replica hung:\n${diagnostics()}`);
  const ms = Date.now() - t0;
  assert.ok(killedAt !== null, `no chunk arrived before the kill: ${JSON.stringify(outcome)}`);
  assert.equal(victim, 'b', `the stream of b's session ran on ${victim}`);
  assert.ok(outcome.error, `the stream on the killed replica ended as if complete: ${JSON.stringify(outcome.s)}`);
  assert.ok(ms - killedAt < 15000, `the client learnt of the failure ${ms - killedAt} ms after the kill`);
  console.log(`# killed replica ${victim} ${killedAt} ms into the stream; the client failed ${ms - killedAt} ms later: ${outcome.error.message}`);
  const survivor = 'a';
  // The completion in flight there: an HTTP error from the balancer (nginx:
  // 502) or a dropped connection (HAProxy, when the request came over a
  // reused connection: it closes the client's as a server would, so that
  // clients retry), never a hang or a success.
  const p = await withTimeout(plain, 15000, () => `the completion on the killed replica hung:\n${diagnostics()}`);
  assert.ok(p.error, `the completion on the killed replica succeeded: ${JSON.stringify(p.r && p.r.data.usage)}`);
  const clean = [502, 503, 504].includes(p.error.status) || p.error instanceof OpenAI.APIConnectionError;
  assert.ok(clean, `the completion on the killed replica: ${p.error.status} ${p.error.message} (${p.error.cause})\n${diagnostics()}`);
  assert.ok(p.at - t0 - killedAt < 15000, `the completion failed ${p.at - t0 - killedAt} ms after the kill`);
  console.log(`# the completion in flight there: ${p.error.status || p.error.constructor.name} ${p.error.message.split('\n')[0]}${p.error.cause ? ` (${p.error.cause.message})` : ''}, ${p.at - t0 - killedAt} ms after the kill`);
  const exit = await withTimeout(replicas[victim].exitPromise, 10000, 'the killed replica to exit');
  assert.equal(exit.signal, 'SIGKILL');

  // Every later request: the victim's session, the survivor's, none, streamed or not.
  for (const [what, session] of [['victim session', key], ['survivor session', sessions[survivor]], ['no session', null]]) {
    for (let i = 0; i < 3; i++) {
      const { data, replica } = await complete({ prompt: REF_PROMPT, max_tokens: 5, temperature: 0 }, session)
        .catch((e) => assert.fail(`${what}, request ${i} after the kill: ${e.message}\n${diagnostics()}`));
      assert.equal(replica, survivor, `${what}, request ${i}`);
      assert.ok(ref.text.startsWith(data.choices[0].text), `${what}: ${JSON.stringify(data.choices[0].text)}`);
    }
    const s = await streamed({ prompt: REF_PROMPT, max_tokens: 5, temperature: 0 }, session)
      .catch((e) => assert.fail(`${what}, a stream after the kill: ${e.message}\n${diagnostics()}`));
    assert.equal(s.replica, survivor);
    assert.equal(s.finish, 'length');
  }
  const h = await get(lb.port, '/health');
  assert.equal(h.status, 200, h.text);
  assert.equal(h.headers['x-qiao-replica'], survivor);
});

test('the replica restarted on its port gets its sessions back', async () => {
  const plugin = process.env.QIAO_FAULTY_PLUGIN;
  const port = replicas.b.port;
  replicas.b = await startServer(['--device', plugin, '--slots', '4', '--model-name', MODEL, '--replica-name', 'b',
    '--port', String(port)], { env: { QIAO_FAULTY_OP_DELAY_US: OP_DELAY_US } });
  assert.equal(replicas.b.port, port);
  // nginx tries it again after fail_timeout (10 s); HAProxy after 2 good checks (about 4 s).
  const t0 = Date.now();
  let last;
  for (;;) {
    last = (await complete({ prompt: 'Tom', max_tokens: 1 }, sessions.b)).replica;
    if (last === 'b') break;
    assert.equal(last, 'a');
    assert.ok(Date.now() - t0 < 30000, `b's session still on ${last} 30 s after b came back\n${diagnostics()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`# b's session back on b ${Date.now() - t0} ms after its restart`);
  assert.equal((await complete({ prompt: 'Tom', max_tokens: 1 }, sessions.a)).replica, 'a');
});

test('SIGTERM drains a replica: its stream finishes, new requests go to the other, it exits 0', async () => {
  const running = streamed({ prompt: REF_PROMPT, max_tokens: 60, temperature: 0, ignore_eos: true }, sessions.b);
  await pollUntil(async () => metricSum((await metrics(replicas.b.port)).samples, 'qiao_requests_running') >= 1, 30000,
    'the stream to run on b');
  replicas.b.proc.kill('SIGTERM');
  // Until b closes its listening socket, a request may still reach it (and
  // one caught in its accept queue at that instant is reset: a 502 the SDKs
  // retry). From then on, connections to b are refused and move on.
  await pollUntil(() => get(replicas.b.port, '/health', {}, { timeoutMs: 5000 }).then(() => false,
    (e) => e.code === 'ECONNREFUSED'), 30000, 'b to stop accepting');
  const during = [];
  for (let i = 0; i < 4; i++) {
    during.push(await complete({ prompt: REF_PROMPT, max_tokens: 3, temperature: 0 }, sessions.b)
      .catch((e) => assert.fail(`request ${i} during the drain: ${e.status} ${e.message}\n${diagnostics()}`)));
  }
  for (const r of during) assert.equal(r.replica, 'a');
  const s = await withTimeout(running, 60000, 'the stream on the draining replica');
  assert.equal(s.replica, 'b');
  assert.equal(s.finish, 'length', 'the stream on the draining replica did not finish');
  assert.ok(ref.text.startsWith(s.text));
  const exit = await withTimeout(replicas.b.exitPromise, 60000, 'the drained replica to exit');
  assert.deepEqual(exit, { code: 0, signal: null }, tail(replicas.b.stderr));
});
