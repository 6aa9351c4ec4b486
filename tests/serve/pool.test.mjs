// serve_pool: one endpoint over two unlike devices, the CPU backend and the
// OpenCL backend (PoCL in CI), each holding a replica of stories260K. Greedy
// requests spread over both come back with llama2.c's text from either
// device, both devices take steps, and /health and /metrics list both.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { get, greedyBody, greedyReference, metrics, post, startServer } from './lib/serve.mjs';

const OPENCL = process.env.QIAO_OPENCL_PLUGIN;
if (!OPENCL) throw new Error('QIAO_OPENCL_PLUGIN is not set: the OpenCL backend was not built');
const ref = greedyReference();
let server;

before(async () => {
  server = await startServer(['--device', 'cpu', '--device', OPENCL, '--slots', '2', '--max-queue', '64']);
});
after(async () => {
  if (server) await server.stop();
});

test('both replicas serve the same exact greedy text', async () => {
  const h = await get(server.port, '/health');
  assert.equal(h.status, 200, h.text);
  const specs = h.json.devices.map((d) => d.spec).sort();
  assert.deepEqual(specs, ['cpu', OPENCL].sort(), h.text);
  for (const d of h.json.devices) assert.equal(d.ok, true, h.text);

  // Twelve at once: more than one device's two slots, so both work.
  const rs = await Promise.all(Array.from({ length: 12 }, () => post(server.port, '/v1/completions', greedyBody())));
  for (const r of rs) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, ref.text);
  }
  const { samples } = await metrics(server.port);
  const steps = {};
  for (const s of samples.filter((x) => x.name === 'qiao_device_steps_total')) steps[s.labels.device] = s.value;
  assert.ok(steps.cpu > 0 && steps[OPENCL] > 0, `both devices take steps: ${JSON.stringify(steps)}`);
});
