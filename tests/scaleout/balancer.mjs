// Starts nginx or HAProxy, unprivileged, on 127.0.0.1, with the example
// configuration of examples/scale-out/ itself: the file is read as it is and
// only its three addresses are replaced (the balancer's 127.0.0.1:8080 and
// the replicas' 127.0.0.1:8081 and :8082), so that the example stays tested.
// Each balancer runs in a process group of its own; stop() (and the exit of
// this process, however it ends) kills the whole group.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { QIAO_SOURCE_DIR, get, pollUntil, sleep, tail, tmpDir, withTimeout } from '../serve/lib/serve.mjs';

export const EXAMPLE_DIR = path.join(QIAO_SOURCE_DIR, 'examples', 'scale-out');

const BALANCERS = {
  nginx: { binary: 'nginx', config: 'nginx.conf' },
  haproxy: { binary: 'haproxy', config: 'haproxy.cfg' },
};

const groups = new Set();
const dirs = new Set();
function killGroups() {
  for (const pid of groups) try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  groups.clear();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}
process.on('exit', killGroups);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killGroups();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)); // the 'exit' hooks stop the replicas
  });
}

// The balancer's program: its absolute path, or null when it is not installed.
export function findBinary(kind) {
  const name = BALANCERS[kind].binary;
  for (const dir of [...(process.env.PATH || '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin']) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* not here */ }
  }
  return null;
}

// A port free right now on 127.0.0.1 (the balancer binds it a moment later;
// start() tries again with another port if someone took it meanwhile).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// The example configuration with its addresses replaced.
export function renderConfig(kind, ports) {
  const file = path.join(EXAMPLE_DIR, BALANCERS[kind].config);
  const text = fs.readFileSync(file, 'utf8');
  const map = { 8080: ports.balancer, 8081: ports.replicas[0], 8082: ports.replicas[1] };
  for (const p of Object.keys(map)) {
    assert.ok(text.includes(`127.0.0.1:${p}`), `${file} no longer has the address 127.0.0.1:${p} this test replaces`);
  }
  return text.replace(/127\.0\.0\.1:(808[012])\b/g, (_, p) => `127.0.0.1:${map[p]}`);
}

// Starts the balancer in front of replicaPorts; resolves once GET /health
// answers 200 through it. Returns { kind, port, proc, dir, log(), stop() }.
export async function startBalancer(kind, replicaPorts) {
  const binary = findBinary(kind);
  assert.ok(binary, `${kind} is not installed (scripts/deps.sh)`);
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const lb = launch(kind, binary, port, replicaPorts);
    try {
      await pollUntil(async () => {
        if (lb.exited) throw new Error(`${kind} exited (${JSON.stringify(lb.exited)}):\n${lb.log()}`);
        return (await get(port, '/health', {}, { timeoutMs: 5000 })).status === 200;
      }, 30000, `GET /health 200 through ${kind}`, 100);
      return lb;
    } catch (e) {
      lastError = e;
      await lb.stop({ check: false });
      if (!/Address already in use|bind/.test(lb.log())) break; // only a lost port race is worth a retry
    }
  }
  throw lastError;
}

function launch(kind, binary, port, replicaPorts) {
  const dir = tmpDir(`scaleout-${kind}`);
  dirs.add(dir);
  const rendered = renderConfig(kind, { balancer: port, replicas: replicaPorts });
  let argv;
  let logFile = null;
  if (kind === 'nginx') {
    for (const d of ['conf', 'logs', 'tmp']) fs.mkdirSync(path.join(dir, d));
    const conf = path.join(dir, 'conf', 'nginx.conf');
    fs.writeFileSync(conf, rendered);
    logFile = path.join(dir, 'logs', 'error.log');
    argv = ['-p', dir, '-c', conf, '-e', logFile];
  } else {
    const conf = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(conf, rendered);
    argv = ['-db', '-f', conf];
  }
  const proc = spawn(binary, argv, { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  groups.add(proc.pid);
  const lb = { kind, port, proc, dir, output: '', exited: null };
  proc.stdout.on('data', (d) => { lb.output += d; });
  proc.stderr.on('data', (d) => { lb.output += d; });
  lb.exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => {
    lb.exited = { code, signal };
    resolve(lb.exited);
  }));
  lb.log = () => {
    let s = lb.output;
    if (logFile && fs.existsSync(logFile)) s += fs.readFileSync(logFile, 'utf8');
    return tail(s, 6000);
  };
  // nginx: SIGTERM is its fast shutdown; HAProxy: SIGTERM stops at once.
  lb.stop = async ({ check = true } = {}) => {
    if (!lb.exited) proc.kill('SIGTERM');
    const e = await withTimeout(lb.exitPromise, 15000, () => `${kind} did not exit after SIGTERM`).catch(() => null);
    try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* the group is gone */ }
    groups.delete(proc.pid);
    await sleep(50);
    const log = lb.log();
    fs.rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    console.log(`# ${kind}'s log:\n${log.replace(/^/gm, '#   ')}`);
    if (check) {
      assert.ok(e, `${kind} did not exit 15 s after SIGTERM:\n${log}`);
      assert.doesNotMatch(log, /\[(emerg|alert|crit)\]|\[ALERT\]/, `${kind} logged a serious error:\n${log}`);
    }
  };
  return lb;
}
