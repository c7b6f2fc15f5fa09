// Starting and driving impair.mjs (the user-space UDP impairment proxy) from another script: the
// network benchmark (run.mjs) and the browser test of layer selection under a capped link
// (web/layers.test.mjs) share it.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Starts impair.mjs in front of `target` (HOST:PORT). Resolves to {port, send(command), close(),
 * child}: the UDP port it listens on, a function sending one command (see impair.mjs) and
 * resolving to its answer, and one that ends it. `track(child)` is called with the process first,
 * so a caller can kill it whatever happens.
 */
export async function startProxy(target, track = (child) => child) {
  const child = track(spawn(process.execPath, [join(here, 'impair.mjs'), '--target', target], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const waiting = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => waiting.shift()?.resolve(JSON.parse(line)));
  child.on('exit', () => { for (const w of waiting.splice(0)) w.reject(new Error('impair.mjs exited')); });
  const next = () => new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  const first = next();
  const { port } = await first;
  const send = (command) => {
    const answer = next();
    child.stdin.write(`${JSON.stringify(command)}\n`);
    return answer;
  };
  return { port, send, child, close: () => { child.stdin.end(); setTimeout(() => child.kill('SIGKILL'), 2000).unref(); } };
}

/** A UDP port on 127.0.0.1 that nothing uses right now. */
export function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.on('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}
