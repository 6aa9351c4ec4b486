// Shared helpers of the `qiao serve` tests: start the real binary on
// 127.0.0.1 with --port 0, talk to it with raw node:http / node:net
// requests, parse SSE streams and Prometheus text, stop it with SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

function requireEnv(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through CTest (tests/serve/CMakeLists.txt)`);
  return v;
}

export const QIAO_BIN = requireEnv('QIAO_BIN');
export const QIAO_SHARED = requireEnv('QIAO_SHARED');
export const QIAO_SOURCE_DIR = requireEnv('QIAO_SOURCE_DIR');
export const QIAO_BUILD_DIR = requireEnv('QIAO_BUILD_DIR');
export const SERVE_DIR = path.join(QIAO_SOURCE_DIR, 'tests', 'serve');

// A file of ../shared; a missing one fails the test loudly.
export function sharedPath(rel) {
  const p = path.join(QIAO_SHARED, rel);
  if (!fs.existsSync(p)) throw new Error(`missing shared file ${p} (QIAO_SHARED=${QIAO_SHARED})`);
  return p;
}

export const STORIES = sharedPath('models/stories260K/stories260K.gguf');
export const CHAT_TEMPLATE = path.join(SERVE_DIR, 'chat_template.jinja');

// The official client, installed by the serve_npm_ci fixture into the build dir.
export function openaiModule() {
  const dir = path.join(QIAO_BUILD_DIR, 'serve-node');
  const req = createRequire(path.join(dir, 'package.json'));
  try {
    return req('openai');
  } catch (e) {
    throw new Error(`the openai package is not installed in ${dir} (the serve_npm_ci fixture): ${e.message}`);
  }
}

// llama2.c's greedy continuation of "Once upon a time" (64 positions: the 5
// prompt tokens with BOS, then 60 sampled ids), see the file's header.
export const REF_PROMPT = 'Once upon a time';
export const REF_PROMPT_IDS = [1, 403, 407, 261, 378];
export function greedyReference() {
  const lines = fs.readFileSync(sharedPath('reference/stories260K/stories260K_greedy_prompt_64.txt'), 'utf8').split('\n');
  let ids = null;
  let textStart = -1;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('# sampled token ids')) ids = lines[i + 1].trim().split(/\s+/).map(Number);
    if (lines[i].startsWith('# stdout text')) textStart = i + 1;
  }
  assert.ok(ids && ids.length === 60 && textStart > 0, 'unexpected reference file format');
  // run.c echoes the prompt, then the continuation, then one final "\n".
  const stdout = lines.slice(textStart).join('\n');
  assert.ok(stdout.startsWith(REF_PROMPT) && stdout.endsWith('\n'));
  return { ids, text: stdout.slice(REF_PROMPT.length, -1) };
}

// ---- The server -------------------------------------------------------------

const live = new Set();
process.on('exit', () => {
  for (const p of live) try { p.kill('SIGKILL'); } catch { /* gone */ }
});

export const SANITIZER_RE = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/;

export function tmpDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `qiao-serve-${tag}-`));
}

// Starts `qiao serve -m MODEL --host 127.0.0.1 --port 0 ARGS...`, waits for
// the listening line and for GET /health 200. Returns the server handle.
export async function startServer(args = [], { model = STORIES, env = {}, threads = 1, waitHealthy = true } = {}) {
  const argv = ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', '-t', String(threads), ...args];
  const proc = spawn(QIAO_BIN, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const server = { proc, argv, stderr: '', stdout: '', exited: null };
  server.exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      server.exited = { code, signal };
      resolve(server.exited);
    });
  });
  proc.stdout.on('data', (d) => { server.stdout += d; });
  const listening = new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      server.stderr += d;
      const m = /^qiao serve: listening on http:\/\/([^:\s]+):(\d+)$/m.exec(server.stderr);
      if (m) resolve({ host: m[1], port: Number(m[2]) });
    });
    proc.on('error', reject);
    server.exitPromise.then((e) => reject(new Error(`qiao serve exited (${JSON.stringify(e)}) before listening:\n${server.stderr}`)));
  });
  const addr = await withTimeout(listening, 60000, () => `no listening line in 60 s:\n${server.stderr}`);
  const lines = server.stderr.split('\n').filter((l) => l.startsWith('qiao serve: listening on'));
  assert.equal(lines.length, 1, 'exactly one listening line');
  assert.equal(addr.host, '127.0.0.1');
  assert.ok(addr.port > 0);
  Object.assign(server, addr, {
    baseURL: `http://127.0.0.1:${addr.port}/v1`,
    stop: (opts) => stopServer(server, opts),
  });
  if (waitHealthy) {
    await pollUntil(async () => (await request(server.port, 'GET', '/health')).status === 200, 60000, '/health 200');
  }
  return server;
}

// Runs `qiao serve ARGS` expecting it to refuse to start: resolves with
// { code, stderr } once it exits (fails if it starts listening).
export async function startFailing(args, { model = STORIES, env = {} } = {}) {
  const argv = ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', '-t', '1', ...args];
  const proc = spawn(QIAO_BIN, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exit = await withTimeout(new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal }))),
    60000, () => `qiao serve did not exit:\n${stderr}`).finally(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } live.delete(proc); });
  return { ...exit, stderr };
}

// SIGTERM, then the exit code must be 0 within timeoutMs and stderr clean.
export async function stopServer(server, { timeoutMs = 30000 } = {}) {
  if (!server.exited) server.proc.kill('SIGTERM');
  const e = await withTimeout(server.exitPromise, timeoutMs, () => `qiao serve did not exit ${timeoutMs} ms after SIGTERM:\n${tail(server.stderr)}`)
    .catch((err) => { server.proc.kill('SIGKILL'); throw err; });
  assertCleanStderr(server);
  assert.deepEqual(e, { code: 0, signal: null }, `exit after SIGTERM:\n${tail(server.stderr)}`);
  return e;
}

export function assertCleanStderr(server) {
  assert.doesNotMatch(server.stderr, SANITIZER_RE, `sanitizer report on the server's stderr:\n${tail(server.stderr, 8000)}`);
}

export function tail(s, n = 4000) {
  return s.length > n ? '...' + s.slice(-n) : s;
}

// ---- Keys files --------------------------------------------------------------

export function writeKeys(dir, lines, mode = 0o600) {
  const p = path.join(dir, 'keys.txt');
  fs.writeFileSync(p, lines.join('\n') + '\n', { mode });
  fs.chmodSync(p, mode);
  return p;
}

// ---- Requests ----------------------------------------------------------------

export function withTimeout(promise, ms, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(typeof what === 'function' ? what() : `timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timer]).finally(() => clearTimeout(t));
}

export async function pollUntil(fn, timeoutMs, what, intervalMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(intervalMs);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One HTTP request on a fresh connection. body: object (sent as JSON),
// string or Buffer. Resolves { status, headers, text, json }.
export function request(port, method, urlPath, body, headers = {}, { timeoutMs = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    let payload = null;
    const h = { ...headers };
    if (body !== undefined && body !== null) {
      payload = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      if (!h['Content-Type'] && !h['content-type']) h['Content-Type'] = 'application/json';
      h['Content-Length'] = payload.length;
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${urlPath}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

export const post = (port, urlPath, body, headers, opts) => request(port, 'POST', urlPath, body, headers, opts);
export const get = (port, urlPath, headers, opts) => request(port, 'GET', urlPath, undefined, headers, opts);

// Asserts an OpenAI-shaped error with this status; returns the error object.
export function assertError(res, status, what = '') {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 500)}`);
  assert.ok(res.json && typeof res.json.error === 'object' && res.json.error !== null, `${what}: not an OpenAI error body: ${res.text.slice(0, 500)}`);
  const e = res.json.error;
  assert.equal(typeof e.message, 'string', `${what}: error.message`);
  assert.ok(e.message.length > 0, `${what}: empty error.message`);
  assert.equal(typeof e.type, 'string', `${what}: error.type`);
  assert.ok('param' in e, `${what}: error.param missing`);
  assert.ok('code' in e, `${what}: error.code missing`);
  assert.match(String(res.headers['content-type']), /application\/json/, `${what}: content-type`);
  return e;
}

export function assertRetryAfter(headers, what = '') {
  const ra = headers['retry-after'];
  assert.ok(ra !== undefined, `${what}: no Retry-After header`);
  assert.match(String(ra), /^\d+$/, `${what}: Retry-After is not delta-seconds: ${ra}`);
  return Number(ra);
}

// A streaming request: collects the SSE events. Resolves { status, headers,
// events (parsed JSON of each data line), done (saw [DONE] last), raw }.
// onEvent(ev, req) may return 'abort' to drop the connection.
export function stream(port, urlPath, body, headers = {}, { onEvent, timeoutMs = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: urlPath, agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': payload.length, ...headers },
    }, (res) => {
      const out = { status: res.statusCode, headers: res.headers, events: [], done: false, raw: '', aborted: false };
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        out.raw += d;
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (res.statusCode !== 200) continue;
          for (const line of block.split('\n')) {
            if (line === '' || line.startsWith(':')) continue; // comments keep the connection alive
            if (!line.startsWith('data: ')) { reject(new Error(`not an SSE data line: ${JSON.stringify(line)}`)); return; }
            const data = line.slice(6);
            if (out.done) { reject(new Error(`data after [DONE]: ${data}`)); return; }
            if (data === '[DONE]') { out.done = true; continue; }
            let ev;
            try { ev = JSON.parse(data); } catch { reject(new Error(`SSE data is not JSON: ${data}`)); return; }
            out.events.push(ev);
            if (onEvent && onEvent(ev, req) === 'abort') {
              out.aborted = true;
              req.destroy();
              resolve(out);
              return;
            }
          }
        }
      });
      res.on('end', () => {
        out.trailing = buf;
        if (res.statusCode !== 200) {
          try { out.json = JSON.parse(out.raw); } catch { /* not JSON */ }
        }
        resolve(out);
      });
      res.on('error', (e) => { if (!out.aborted) reject(e); });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`stream ${urlPath}: stalled for ${timeoutMs} ms`)));
    req.on('error', (e) => reject(e));
    req.write(payload);
    req.end();
  });
}

// Raw bytes over TCP: writes `chunks` (strings/Buffers, with optional delays
// {delay: ms}), then reads until the server closes or timeoutMs. Resolves
// { data (string), status (parsed, or null), closed (by the server),
//   error (a socket error, e.g. ECONNRESET), ms (until close) }.
export function raw(port, chunks, { timeoutMs = 30000, endAfterWrite = false, stopOnAnswer = false } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    const out = { data: Buffer.alloc(0), closed: false, error: null, ms: 0 };
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      out.ms = Date.now() - t0;
      const s = out.data.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(s);
      out.status = m ? Number(m[1]) : null;
      out.text = out.data.toString('utf8');
      sock.destroy();
      resolve(out);
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.on('data', (d) => { out.data = Buffer.concat([out.data, d]); });
    sock.on('end', () => { if (!finished) out.closed = true; finish(); });
    sock.on('close', () => { if (!finished) out.closed = true; finish(); });
    sock.on('error', (e) => { out.error = e.code || String(e); });
    // stopOnAnswer: like curl, stop sending once the server has answered (a
    // 413 before the end of the body). Big chunks go in 64 KiB pieces.
    const answered = () => stopOnAnswer && out.data.length > 0;
    const write = (buf) => new Promise((res) => {
      if (sock.destroyed || answered()) { res(); return; }
      if (sock.write(buf)) res();
      else { sock.once('drain', res); sock.once('close', res); }
    });
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (finished) return;
        if (c && typeof c === 'object' && 'delay' in c) { await sleep(c.delay); continue; }
        if (sock.destroyed || sock.writableEnded) return;
        const buf = Buffer.isBuffer(c) ? c : Buffer.from(c, 'latin1');
        for (let off = 0; off < buf.length && !finished && !answered(); off += 65536) {
          await write(buf.subarray(off, Math.min(buf.length, off + 65536)));
        }
      }
      if (endAfterWrite && !sock.destroyed) sock.end();
    });
  });
}

// ---- Metrics -------------------------------------------------------------------

// Prometheus text → [{ name, labels: {k: v}, value }].
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;
      let lm;
      let consumed = 0;
      while ((lm = re.exec(m[3])) !== null) {
        labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        consumed = re.lastIndex;
      }
      assert.equal(consumed, m[3].length, `bad labels in ${JSON.stringify(line)}`);
    }
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    assert.ok(!Number.isNaN(v) || m[4] === 'NaN', `bad value in ${JSON.stringify(line)}`);
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

export async function metrics(port, headers = {}) {
  const r = await get(port, '/metrics', headers);
  assert.equal(r.status, 200, `/metrics: ${r.text.slice(0, 300)}`);
  assert.match(String(r.headers['content-type']), /text\/plain/);
  return { text: r.text, samples: parseMetrics(r.text) };
}

// Sum of the samples of a metric whose labels include `match`.
export function metricSum(samples, name, match = {}) {
  const sel = samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  assert.ok(sel.length > 0, `no metric ${name}${JSON.stringify(match)}`);
  return sel.reduce((a, s) => a + s.value, 0);
}

// ---- Common request bodies ----------------------------------------------------

export const greedyBody = (extra = {}) => ({ prompt: REF_PROMPT, max_tokens: 60, temperature: 0, ...extra });

// Checks the SSE contract of a completions (chat: true for chat) stream and
// returns what it carried: { id, texts[index], finish[index], usage,
// logprobs[index] (concatenated per-chunk logprobs) }.
//  - 200, text/event-stream, [DONE] last, every chunk one id and object;
//  - chat: each choice's first chunk carries delta.role "assistant";
//  - each choice has one chunk with a finish_reason, its last;
//  - a usage chunk (choices: []) exactly when include_usage, after the rest.
export function checkStream(out, { chat = false, includeUsage = false, n = 1, what = 'stream' } = {}) {
  assert.equal(out.status, 200, `${what}: status ${out.status}: ${out.raw.slice(0, 500)}`);
  assert.match(String(out.headers['content-type']), /^text\/event-stream/, `${what}: content-type`);
  assert.ok(out.done, `${what}: no data: [DONE] at the end:\n${out.raw.slice(-500)}`);
  assert.equal((out.trailing || '').trim(), '', `${what}: bytes after the last event`);
  assert.ok(out.events.length > 0, `${what}: no chunks`);
  const id = out.events[0].id;
  assert.ok(typeof id === 'string' && id.length > 0, `${what}: chunk id`);
  const object = chat ? 'chat.completion.chunk' : 'text_completion';
  const texts = Array(n).fill('');
  const finish = Array(n).fill(null);
  const logprobs = Array.from({ length: n }, () => []);
  const seenRole = Array(n).fill(false);
  let usage = null;
  for (const [k, ev] of out.events.entries()) {
    assert.equal(ev.id, id, `${what}: chunk ${k} has another id`);
    assert.equal(ev.object, object, `${what}: chunk ${k} object`);
    assert.ok(Array.isArray(ev.choices), `${what}: chunk ${k} choices`);
    if (usage) assert.fail(`${what}: a chunk after the usage chunk: ${JSON.stringify(ev)}`);
    if (ev.choices.length === 0) {
      assert.ok(includeUsage, `${what}: a chunk without choices but include_usage was not asked: ${JSON.stringify(ev)}`);
      assert.ok(ev.usage && typeof ev.usage === 'object', `${what}: the empty-choices chunk has no usage`);
      usage = ev.usage;
      continue;
    }
    if (!includeUsage) assert.ok(ev.usage === undefined || ev.usage === null, `${what}: usage in a chunk without include_usage: ${JSON.stringify(ev)}`);
    for (const c of ev.choices) {
      assert.ok(Number.isInteger(c.index) && c.index >= 0 && c.index < n, `${what}: choice index ${c.index}`);
      assert.equal(finish[c.index], null, `${what}: choice ${c.index} continues after its finish_reason`);
      if (chat) {
        assert.ok(c.delta && typeof c.delta === 'object', `${what}: chunk without delta`);
        if (!seenRole[c.index]) assert.equal(c.delta.role, 'assistant', `${what}: the first chunk of choice ${c.index} has no role`);
        seenRole[c.index] = true;
        if (typeof c.delta.content === 'string') texts[c.index] += c.delta.content;
        if (c.logprobs && Array.isArray(c.logprobs.content)) logprobs[c.index].push(...c.logprobs.content);
      } else {
        assert.equal(typeof c.text, 'string', `${what}: chunk text`);
        texts[c.index] += c.text;
        if (c.logprobs && Array.isArray(c.logprobs.tokens)) logprobs[c.index].push(c.logprobs);
      }
      if (c.finish_reason !== null && c.finish_reason !== undefined) finish[c.index] = c.finish_reason;
    }
  }
  for (let i = 0; i < n; i++) assert.ok(finish[i] !== null, `${what}: choice ${i} has no chunk with a finish_reason`);
  if (includeUsage) assert.ok(usage, `${what}: include_usage but no usage chunk`);
  return { id, texts, finish, usage, logprobs };
}

export function assertUsage(usage, prompt, completion, what = 'usage') {
  assert.ok(usage, `${what}: missing`);
  assert.equal(usage.prompt_tokens, prompt, `${what}.prompt_tokens`);
  if (completion !== undefined) assert.equal(usage.completion_tokens, completion, `${what}.completion_tokens`);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens, `${what}.total_tokens`);
  assert.ok(usage.prompt_tokens_details && Number.isInteger(usage.prompt_tokens_details.cached_tokens),
    `${what}.prompt_tokens_details.cached_tokens missing: ${JSON.stringify(usage)}`);
  assert.ok(usage.prompt_tokens_details.cached_tokens >= 0 && usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens,
    `${what}.prompt_tokens_details.cached_tokens out of range: ${JSON.stringify(usage)}`);
}

// The greedy ids of stories260K from BOS (llama2.c, 256 positions).
export function greedyFromBos() {
  const lines = fs.readFileSync(sharedPath('reference/stories260K/stories260K_greedy_bos_256.txt'), 'utf8').split('\n');
  const i = lines.findIndex((l) => l.startsWith('# sampled token ids'));
  const ids = lines[i + 1].trim().split(/\s+/).map(Number);
  assert.equal(ids.length, 256, 'stories260K_greedy_bos_256.txt: 256 sampled ids');
  return ids;
}

export async function detokenize(port, tokens, headers = {}) {
  const r = await post(port, '/detokenize', { tokens }, headers);
  assert.equal(r.status, 200, `/detokenize: ${r.text.slice(0, 300)}`);
  assert.equal(typeof r.json.content, 'string');
  return r.json.content;
}

export async function tokenize(port, content, headers = {}) {
  const r = await post(port, '/tokenize', { content }, headers);
  assert.equal(r.status, 200, `/tokenize: ${r.text.slice(0, 300)}`);
  assert.ok(Array.isArray(r.json.tokens));
  return r.json.tokens;
}

// The text that `ids` add after `prefix` (both id lists start with BOS),
// by the server's own detokenizer; asserts the prefix's text is a prefix.
export async function continuationText(port, prefix, ids) {
  const a = await detokenize(port, prefix);
  const b = await detokenize(port, [...prefix, ...ids]);
  assert.ok(b.startsWith(a), `detokenize is not prefix-stable: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  return b.slice(a.length);
}
