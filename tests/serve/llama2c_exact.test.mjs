// serve_llama2c_exact: stories260K through POST /v1/completions at
// temperature 0 gives llama2.c's greedy continuation exactly: alone, among
// 16 concurrent requests of other prompts, lengths, temperatures and modes
// (batch invariance), and after prefix-cache hits; /metrics has the
// required families and its counters add up to the responses.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  REF_PROMPT, REF_PROMPT_IDS, assertUsage, checkStream, continuationText, detokenize, greedyBody,
  greedyFromBos, greedyReference, metricSum, metrics, post, startServer, stream,
} from './lib/serve.mjs';

const ref = greedyReference();
const bos = greedyFromBos();
let server;
let port;

before(async () => {
  server = await startServer(['--slots', '16']);
  port = server.port;
});
after(async () => {
  if (server) await server.stop();
});

async function complete(body, what) {
  const r = await post(port, '/v1/completions', body);
  assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 500)}`);
  assert.equal(r.json.object, 'text_completion');
  assert.equal(r.json.choices.length, body.n || 1);
  return r.json;
}

// A long prompt and its greedy continuation, both from the BOS reference.
const LONG = [1, ...bos.slice(0, 100)];
let longExpected; // text of bos[100..140)

test('the two llama2.c references agree (sanity of the files)', () => {
  assert.deepEqual(bos.slice(0, 4), REF_PROMPT_IDS.slice(1));
  assert.deepEqual(bos.slice(4, 64), ref.ids);
});

test('detokenize of the reference ids gives the reference text', async () => {
  assert.equal(await continuationText(port, REF_PROMPT_IDS, ref.ids), ref.text);
  longExpected = await continuationText(port, LONG, bos.slice(100, 140));
  assert.ok(longExpected.length > 40);
});

test('alone: text, ids and usage equal llama2.c', async () => {
  const j = await complete(greedyBody({ logprobs: 1 }), 'string prompt');
  const c = j.choices[0];
  assert.equal(c.text, ref.text);
  assert.equal(c.finish_reason, 'length');
  assertUsage(j.usage, 5, 60);
  // The ids: each token's text, in order, is what the reference id at that
  // position adds to the text before it.
  assert.ok(c.logprobs && Array.isArray(c.logprobs.tokens), `no logprobs: ${JSON.stringify(c)}`);
  assert.equal(c.logprobs.tokens.length, 60);
  assert.equal(c.logprobs.tokens.join(''), ref.text);
  for (let i = 0; i < 60; i++) {
    const piece = await continuationText(port, [...REF_PROMPT_IDS, ...ref.ids.slice(0, i)], [ref.ids[i]]);
    assert.equal(c.logprobs.tokens[i], piece, `token ${i}: expected id ${ref.ids[i]}`);
  }
  // The prompt as ids (BOS included by the caller, nothing added).
  const k = await complete(greedyBody({ prompt: REF_PROMPT_IDS }), 'id prompt');
  assert.equal(k.choices[0].text, ref.text);
  assertUsage(k.usage, 5, 60, 'id prompt usage');
  // 64 tokens: the reference's 60 come first.
  const m = await complete(greedyBody({ max_tokens: 64 }), 'max_tokens 64');
  assert.ok(m.choices[0].text.startsWith(ref.text), m.choices[0].text);
  assertUsage(m.usage, 5, 64, 'max_tokens 64 usage');
  // A long prompt whose continuation is in the BOS reference.
  const l = await complete({ prompt: LONG, max_tokens: 40, temperature: 0 }, 'long prompt');
  assert.equal(l.choices[0].text, longExpected);
  assertUsage(l.usage, 101, 40, 'long prompt usage');
});

// Sampled with a fixed seed: the same tokens alone and in a crowd.
const SEEDED = { prompt: 'Lily went to the park', max_tokens: 48, temperature: 0.8, top_p: 0.95, seed: 1234 };
let seededAlone;

test('a seeded sampled request repeats itself', async () => {
  seededAlone = (await complete(SEEDED, 'seeded')).choices[0].text;
  const again = (await complete(SEEDED, 'seeded again')).choices[0].text;
  assert.equal(again, seededAlone);
});

test('16 concurrent requests: the greedy and seeded ones are unchanged', async () => {
  const jobs = [];
  const add = (what, p, check) => jobs.push(p.then((r) => ({ what, r, check })));
  const plain = (what, body, check) => add(what, post(port, '/v1/completions', body), check);
  const streamed = (what, body, check) => add(what, stream(port, '/v1/completions', { ...body, stream: true }), check);

  plain('greedy', greedyBody(), (r) => {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, ref.text);
    assertUsage(r.json.usage, 5, 60);
  });
  streamed('greedy streamed', greedyBody(), (r) => {
    const s = checkStream(r, { what: 'greedy streamed' });
    assert.equal(s.texts[0], ref.text);
    assert.equal(s.finish[0], 'length');
  });
  streamed('greedy ids streamed with usage', greedyBody({ prompt: REF_PROMPT_IDS, stream_options: { include_usage: true } }), (r) => {
    const s = checkStream(r, { includeUsage: true, what: 'greedy ids streamed' });
    assert.equal(s.texts[0], ref.text);
    assertUsage(s.usage, 5, 60, 'stream usage');
  });
  plain('long greedy', { prompt: LONG, max_tokens: 40, temperature: 0 }, (r) => {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, longExpected);
  });
  streamed('long greedy streamed', { prompt: LONG, max_tokens: 40, temperature: 0 }, (r) => {
    assert.equal(checkStream(r, { what: 'long streamed' }).texts[0], longExpected);
  });
  plain('seeded', SEEDED, (r) => {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, seededAlone);
  });
  streamed('seeded streamed', SEEDED, (r) => {
    assert.equal(checkStream(r, { what: 'seeded streamed' }).texts[0], seededAlone);
  });
  // Others, only checked for being well-formed.
  const ok = (n = 1) => (r) => {
    if (r.events) checkStream(r, { n });
    else {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices.length, n);
    }
  };
  plain('hot', { prompt: 'The cat', max_tokens: 120, temperature: 1.0, ignore_eos: true }, ok());
  streamed('hot streamed', { prompt: 'One day, a little boy named Tim', max_tokens: 100, temperature: 1.2, top_k: 40, ignore_eos: true }, ok());
  plain('short', { prompt: 'A big dog', max_tokens: 4, temperature: 0.5 }, ok());
  plain('stop', { prompt: REF_PROMPT, max_tokens: 60, temperature: 0, stop: ['.'] }, (r) => {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, ref.text.slice(0, ref.text.indexOf('.')));
    assert.equal(r.json.choices[0].finish_reason, 'stop');
  });
  plain('n=2', { prompt: 'The sun', max_tokens: 30, temperature: 0.9, n: 2 }, ok(2));
  streamed('min_p streamed', { prompt: 'Tom and Sue', max_tokens: 80, temperature: 0.7, min_p: 0.1, frequency_penalty: 0.5 }, ok());
  plain('logprobs', { prompt: 'The bird', max_tokens: 20, temperature: 0, logprobs: 3 }, ok());
  plain('penalties', { prompt: REF_PROMPT, max_tokens: 50, temperature: 0, presence_penalty: 1.5 }, ok());
  plain('long sampled', { prompt: [1, ...bos.slice(0, 200)], max_tokens: 20, temperature: 1.0 }, ok());
  assert.equal(jobs.length, 16);

  const results = await Promise.all(jobs);
  for (const { what, r, check } of results) {
    try {
      check(r);
    } catch (e) {
      e.message = `${what}: ${e.message}`;
      throw e;
    }
  }
});

test('prefix-cache hits give the same tokens', async () => {
  const m0 = metricSum((await metrics(port)).samples, 'qiao_prefix_cache_hit_tokens_total');
  const l = await complete({ prompt: LONG, max_tokens: 40, temperature: 0 }, 'long repeated');
  assert.equal(l.choices[0].text, longExpected);
  assertUsage(l.usage, 101, 40);
  const cached = l.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached > 0, `no prefix-cache hit on a repeated 101-token prompt: ${JSON.stringify(l.usage)}`);
  // A longer prompt that shares the cached prefix.
  const LONGER = [1, ...bos.slice(0, 130)];
  const expected = await continuationText(port, LONGER, bos.slice(130, 160));
  const l2 = await complete({ prompt: LONGER, max_tokens: 30, temperature: 0 }, 'longer');
  assert.equal(l2.choices[0].text, expected);
  assert.ok(l2.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(l2.usage));
  // And the short reference prompt again, streamed and not.
  assert.equal((await complete(greedyBody(), 'repeat')).choices[0].text, ref.text);
  const s = checkStream(await stream(port, '/v1/completions', greedyBody({ stream: true })));
  assert.equal(s.texts[0], ref.text);
  const m1 = metricSum((await metrics(port)).samples, 'qiao_prefix_cache_hit_tokens_total');
  assert.ok(m1 - m0 >= cached, `qiao_prefix_cache_hit_tokens_total went from ${m0} to ${m1}`);
});

test('the prompt echoed by detokenize of BOS + prompt ids', async () => {
  // The reference's stdout echoes the prompt: BOS + prompt ids decode to it.
  const t = await detokenize(port, REF_PROMPT_IDS.slice(1));
  assert.equal(t.trimStart(), REF_PROMPT);
});

// The Prometheus families the server must expose, and their kinds.
const FAMILIES = {
  qiao_requests_running: 'gauge', qiao_requests_queued: 'gauge', qiao_requests_rejected_total: 'counter',
  qiao_requests_finished_total: 'counter', qiao_prompt_tokens_total: 'counter', qiao_prompt_cached_tokens_total: 'counter',
  qiao_generation_tokens_total: 'counter', qiao_time_to_first_token_seconds: 'histogram',
  qiao_inter_token_latency_seconds: 'histogram', qiao_kv_blocks: 'gauge', qiao_kv_blocks_used: 'gauge',
  qiao_kv_blocks_cached: 'gauge', qiao_prefix_cache_hit_tokens_total: 'counter', qiao_device_up: 'gauge',
};

function checkHistogram(samples, name, tenant) {
  const buckets = samples.filter((s) => s.name === `${name}_bucket` && s.labels.tenant === tenant);
  assert.ok(buckets.length >= 2, `${name}: no buckets`);
  let prevLe = -Infinity;
  let prev = 0;
  for (const b of buckets) {
    const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
    assert.ok(le > prevLe, `${name}: le not ascending`);
    assert.ok(b.value >= prev, `${name}: buckets not cumulative`);
    prevLe = le;
    prev = b.value;
  }
  assert.equal(prevLe, Infinity, `${name}: no +Inf bucket`);
  const count = metricSum(samples, `${name}_count`, { tenant });
  assert.equal(prev, count, `${name}: +Inf bucket != _count`);
  assert.ok(metricSum(samples, `${name}_sum`, { tenant }) >= 0);
  return count;
}

test('/metrics: the families, and counters that add up to the responses', async () => {
  const m0 = await metrics(port);
  for (const [name, type] of Object.entries(FAMILIES)) {
    assert.ok(m0.text.includes(`# TYPE ${name} ${type}\n`), `/metrics lacks # TYPE ${name} ${type}`);
  }
  for (const name of ['qiao_requests_running', 'qiao_requests_queued', 'qiao_generation_tokens_total', 'qiao_prompt_tokens_total']) {
    assert.ok(m0.samples.some((s) => s.name === name && s.labels.tenant === 'default'), `${name} has no tenant="default" sample`);
  }
  for (const name of ['qiao_kv_blocks_used', 'qiao_kv_blocks', 'qiao_prefix_cache_hit_tokens_total', 'qiao_device_up']) {
    assert.ok(m0.samples.some((s) => s.name === name && s.labels.device === 'cpu'), `${name} has no device="cpu" sample`);
  }
  assert.equal(metricSum(m0.samples, 'qiao_kv_blocks_used'), 0, 'KV blocks in use while idle');
  assert.ok(metricSum(m0.samples, 'qiao_kv_blocks') > 0);
  const get0 = (name) => metricSum(m0.samples, name, { tenant: 'default' });
  const ttft0 = checkHistogram(m0.samples, 'qiao_time_to_first_token_seconds', 'default');
  const itl0 = checkHistogram(m0.samples, 'qiao_inter_token_latency_seconds', 'default');

  const a = await complete(greedyBody(), 'metrics a');
  const b = await complete({ prompt: LONG, max_tokens: 40, temperature: 0 }, 'metrics b');
  const s = checkStream(await stream(port, '/v1/completions', { prompt: 'The cat', max_tokens: 12, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }), { includeUsage: true });
  const usages = [a.usage, b.usage, s.usage];

  const m1 = await metrics(port);
  const d = (name) => metricSum(m1.samples, name, { tenant: 'default' }) - get0(name);
  const sum = (f) => usages.reduce((acc, u) => acc + f(u), 0);
  assert.equal(d('qiao_generation_tokens_total'), sum((u) => u.completion_tokens));
  assert.equal(d('qiao_prompt_cached_tokens_total'), sum((u) => u.prompt_tokens_details.cached_tokens));
  assert.equal(d('qiao_prompt_tokens_total'), sum((u) => u.prompt_tokens - u.prompt_tokens_details.cached_tokens));
  assert.equal(metricSum(m1.samples, 'qiao_requests_finished_total', { tenant: 'default', finish: 'length' }) -
    metricSum(m0.samples, 'qiao_requests_finished_total', { tenant: 'default', finish: 'length' }), 3);
  assert.equal(checkHistogram(m1.samples, 'qiao_time_to_first_token_seconds', 'default') - ttft0, 3);
  assert.equal(checkHistogram(m1.samples, 'qiao_inter_token_latency_seconds', 'default') - itl0,
    sum((u) => u.completion_tokens - 1));
  assert.equal(metricSum(m1.samples, 'qiao_requests_running'), 0);
  assert.equal(metricSum(m1.samples, 'qiao_requests_queued'), 0);
  assert.equal(metricSum(m1.samples, 'qiao_kv_blocks_used'), 0);
});
