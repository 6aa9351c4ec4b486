// serve_device_failure: a pool of the CPU and a faulty CPU plugin
// (libqiao-test-faulty.so: fails with DEVICE_LOST once the file named by
// QIAO_FAULTY_TRIGGER exists). Before the fault both devices serve, with
// the same greedy tokens. After it: requests in flight on the faulty device
// end with an error that names it, every new request is served (by cpu),
// /health stays 200 and lists the device as out with its reason, /metrics
// shows it down; SIGTERM exits 0. (Streams end with an error event, whole
// responses with a 500, both naming the device.) And a device slow to open
// (QIAO_FAULTY_OPEN_DELAY_MS): /health and generation answer 503 until the
// model is loaded, then 200.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  REF_PROMPT, assertError, assertUsage, checkStream, get, greedyBody, greedyReference, metrics, pollUntil, post,
  startServer, stream, tmpDir,
} from './lib/serve.mjs';

const PLUGIN = process.env.QIAO_FAULTY_PLUGIN;
if (!PLUGIN || !fs.existsSync(PLUGIN)) throw new Error(`QIAO_FAULTY_PLUGIN (${PLUGIN}) is not a file: the faulty test plugin was not built`);
const ref = greedyReference();
const trigger = path.join(tmpDir('faulty'), 'trigger');
let server;
let port;

before(async () => {
  server = await startServer(['--device', 'cpu', '--device', PLUGIN, '--slots', '2', '--max-queue', '64'],
    { env: { QIAO_FAULTY_TRIGGER: trigger } });
  port = server.port;
});
after(async () => {
  if (server) await server.stop();
});

// Samples of a per-device metric: { spec: value }.
async function perDevice(name) {
  const { samples } = await metrics(port);
  const out = {};
  for (const s of samples.filter((x) => x.name === name)) out[s.labels.device] = s.value;
  return out;
}

function healthDevices(h) {
  assert.ok(h.json && Array.isArray(h.json.devices), `/health has no devices list: ${h.text}`);
  return h.json.devices;
}
const isFaulty = (d) => JSON.stringify(d).includes(PLUGIN) || /faulty/.test(JSON.stringify(d));

test('both devices up and serving the same greedy tokens', async () => {
  const h = await get(port, '/health');
  assert.equal(h.status, 200);
  const devs = healthDevices(h);
  assert.equal(devs.length, 2, h.text);
  for (const d of devs) assert.equal(d.ok, true, h.text);
  assert.equal(devs.filter(isFaulty).length, 1, `the plugin is not named in /health: ${h.text}`);
  const up = await perDevice('qiao_device_up');
  assert.deepEqual(Object.values(up).sort(), [1, 1], JSON.stringify(up));
  // Enough at once to use both devices (2 slots each).
  const rs = await Promise.all(Array.from({ length: 4 }, () => post(port, '/v1/completions', greedyBody())));
  for (const r of rs) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, ref.text);
  }
  const steps = await perDevice('qiao_device_steps_total');
  assert.ok(Object.values(steps).every((v) => v > 0), `a device ran no step: ${JSON.stringify(steps)}`);
});

test('the fault: in-flight requests on it fail naming it; everything after is served by cpu', async () => {
  const long = { prompt: REF_PROMPT, max_tokens: 400, temperature: 0, ignore_eos: true };
  // 4 running (2 per device): 2 streams and 2 whole responses.
  // A stream commits to 200 with its first token; a fault before that is a
  // plain 500. Wait for each stream's first token so the streams meet the
  // fault mid-stream, as this test means them to.
  const jobs = [];
  const streamsStarted = new Set();
  for (let i = 0; i < 4; i++) {
    const onEvent = (ev) => { if (ev.choices && ev.choices.length) streamsStarted.add(i); };
    jobs.push(i % 2 ? post(port, '/v1/completions', long) : stream(port, '/v1/completions', { ...long, stream: true }, {}, { onEvent }));
  }
  await pollUntil(async () => streamsStarted.size === 2
    && Object.values(await perDevice('qiao_device_requests_running')).reduce((a, v) => a + v, 0) === 4,
  30000, '4 requests running and both streams started');
  const running = await perDevice('qiao_device_requests_running');
  assert.equal(running[PLUGIN], 2, `the faulty device does not run 2: ${JSON.stringify(running)}`);
  // The 4 hold every slot: this one queues and is served by cpu after the fault.
  const queued = post(port, '/v1/completions', greedyBody());
  fs.writeFileSync(trigger, 'fail\n');

  const results = await Promise.all(jobs);
  const names = (msg) => msg.includes(PLUGIN) && /lost/i.test(msg);
  let failed = 0;
  for (const [i, r] of results.entries()) {
    if (r.events) {
      assert.equal(r.status, 200);
      const err = r.events.find((ev) => ev.error);
      if (err) {
        failed++;
        assert.equal(r.events[r.events.length - 1], err, `stream ${i}: events after the error event`);
        assert.ok(names(err.error.message), `stream ${i}: the error does not name the lost device: ${err.error.message}`);
      } else {
        const c = checkStream(r, { what: `stream ${i}` });
        assert.equal(c.texts[0].length > 0, true);
        assert.equal(c.finish[0], 'length');
      }
    } else if (r.status !== 200) {
      failed++;
      const e = assertError(r, 500, `request ${i}`);
      assert.ok(names(e.message), `request ${i}: the error does not name the lost device: ${e.message}`);
    } else {
      assert.equal(r.json.usage.completion_tokens, 400);
    }
  }
  assert.equal(failed, 2, 'the 2 requests on the faulty device did not both fail');
  const q = await queued;
  assert.equal(q.status, 200, q.text);
  assert.equal(q.json.choices[0].text, ref.text);

  // New requests: all served, exactly.
  const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2
    ? stream(port, '/v1/completions', greedyBody({ stream: true }))
    : post(port, '/v1/completions', greedyBody()))));
  for (const r of rs) {
    assert.equal(r.status, 200, r.text || r.raw);
    if (r.events) assert.equal(r.events.filter((e) => e.choices && e.choices.length).map((e) => e.choices[0].text).join(''), ref.text);
    else {
      assert.equal(r.json.choices[0].text, ref.text);
      assertUsage(r.json.usage, 5, 60);
    }
  }
});

test('/health stays 200 and lists the device as out with its reason; /metrics shows it down', async () => {
  const h = await pollUntil(async () => {
    const r = await get(port, '/health');
    return r.status === 200 && healthDevices(r).some((d) => isFaulty(d) && d.ok === false) ? r : null;
  }, 5000, '/health to list the faulty device as out');
  const devs = healthDevices(h);
  const bad = devs.find(isFaulty);
  const cpu = devs.find((d) => !isFaulty(d));
  assert.equal(bad.ok, false);
  assert.ok(typeof bad.failure === 'string' && bad.failure.length > 0, `no failure reason: ${h.text}`);
  assert.match(bad.failure, /lost|DEVICE_LOST/i, h.text);
  assert.equal(cpu.ok, true);
  const up = await perDevice('qiao_device_up');
  assert.equal(up[PLUGIN], 0, JSON.stringify(up));
  assert.equal(up.cpu, 1, JSON.stringify(up));
  // Still served.
  const r = await post(port, '/v1/completions', greedyBody());
  assert.equal(r.status, 200);
  assert.equal(r.json.choices[0].text, ref.text);
  assertError(await post(port, '/v1/completions', { prompt: 5 }), 400, 'bad request after the fault');
});

test('while a device is still opening: /health and generation answer 503, then 200 once loaded', async () => {
  // The faulty plugin's device_open takes 3 s more: the server listens first.
  const slow = await startServer(['--device', PLUGIN], { env: { QIAO_FAULTY_OPEN_DELAY_MS: '3000' }, waitHealthy: false });
  try {
    const h = await get(slow.port, '/health');
    assert.equal(h.status, 503, `while loading: ${h.text}`);
    assertError(await post(slow.port, '/v1/completions', greedyBody()), 503, 'generation while loading');
    await pollUntil(async () => (await get(slow.port, '/health')).status === 200, 60000, '/health 200 after loading');
    const r = await post(slow.port, '/v1/completions', greedyBody());
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, ref.text);
  } finally {
    await slow.stop();
  }
});
