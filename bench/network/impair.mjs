// A user-space UDP impairment proxy (no kernel netem here): loss, loss bursts, delay with jitter
// (order kept) and a rate cap with a bounded drop-tail queue, per direction, changeable at run time.
//
//   node impair.mjs --target HOST:PORT [--listen HOST]
//
// Listens on an ephemeral UDP port of HOST (default 127.0.0.1) and prints one JSON line
// {"port": L} on stdout. Each distinct client source S gets its own upstream socket U connected to
// the target T: S -> L -> U -> T and T -> U -> L -> S, so the target sees U as its peer (an ICE
// peer-reflexive candidate). "down" is target -> client (a viewer's downlink), "up" client -> target.
//
// Commands, one JSON object per stdin line (answers are JSON lines on stdout):
//   {"set": {"up": {...}, "down": {...}}}  or {"set": {...}} for both directions; fields (all
//        optional, unset ones keep their value): loss (0..1), delayMs, jitterMs (uniform ±),
//        rateKbps (0 = no cap), queueMs (drop-tail bound of the cap's queue, in time at the rate;
//        default 100), queueMinBytes (the queue holds at least this, default 6000: a few packets).
//   {"burst": {"ms": N, "dir": "both"|"up"|"down"}}  drops everything for N ms from now.
//   {"stats": true}  answers {"stats": {up: {...}, down: {...}, clients}} (packets and bytes in,
//        forwarded, and dropped by loss, burst and queue).
//   {"reset": true}  clears the counters.
// The process exits when stdin closes, so it never outlives its parent.
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const [targetHost, targetPortText] = (option('--target', '') ?? '').split(/:(?=\d+$)/);
const targetPort = Number(targetPortText);
if (!targetHost || !targetPort) {
  console.error('usage: node impair.mjs --target HOST:PORT [--listen HOST]');
  process.exit(2);
}
const listenHost = option('--listen', '127.0.0.1');
const BUFFER = 4 << 20;

function newCounters() {
  return { packetsIn: 0, bytesIn: 0, forwarded: 0, bytesForwarded: 0, lost: 0, burstDropped: 0, queueDropped: 0 };
}

/** One direction's impairments and its queue of packets waiting for their send time. */
class Direction {
  constructor(name) {
    this.name = name;
    this.params = { loss: 0, delayMs: 0, jitterMs: 0, rateKbps: 0, queueMs: 100, queueMinBytes: 6000 };
    this.burstUntil = 0;
    this.linkFreeAt = 0; // when the capped link has sent everything queued so far (ms)
    this.lastDue = 0; // the latest delivery time handed out: jitter never reorders
    this.queue = []; // [{due, send}] in due order
    this.timer = null;
    this.timerAt = Infinity;
    this.counters = newCounters();
  }

  set(params) {
    for (const [key, value] of Object.entries(params ?? {})) {
      if (key in this.params && Number.isFinite(Number(value))) this.params[key] = Number(value);
    }
  }

  /** Takes a datagram of `size` bytes; `send` forwards it. */
  push(size, send) {
    const now = performance.now();
    const c = this.counters;
    c.packetsIn += 1;
    c.bytesIn += size;
    if (now < this.burstUntil) {
      c.burstDropped += 1;
      return;
    }
    const p = this.params;
    if (p.loss > 0 && Math.random() < p.loss) {
      c.lost += 1;
      return;
    }
    let due = now;
    if (p.rateKbps > 0) {
      // The bottleneck: a FIFO drained at rateKbps; a packet that would find more than the
      // queue's bound waiting ahead of it is dropped (drop-tail).
      const bytesPerMs = p.rateKbps / 8;
      const backlogBytes = Math.max(0, this.linkFreeAt - now) * bytesPerMs;
      const bound = Math.max(p.queueMs * bytesPerMs, p.queueMinBytes);
      if (backlogBytes + size > bound) {
        c.queueDropped += 1;
        return;
      }
      this.linkFreeAt = Math.max(now, this.linkFreeAt) + size / bytesPerMs;
      due = this.linkFreeAt;
    }
    if (p.delayMs > 0 || p.jitterMs > 0) {
      due += Math.max(0, p.delayMs + (Math.random() * 2 - 1) * p.jitterMs);
    }
    due = Math.max(due, this.lastDue);
    this.lastDue = due;
    if (due <= now + 0.5 && this.queue.length === 0) {
      this.deliver(size, send);
      return;
    }
    this.queue.push({ due, size, send });
    this.schedule();
  }

  deliver(size, send) {
    this.counters.forwarded += 1;
    this.counters.bytesForwarded += size;
    send();
  }

  schedule() {
    if (this.queue.length === 0) return;
    const due = this.queue[0].due;
    if (this.timer && this.timerAt <= due) return;
    clearTimeout(this.timer);
    this.timerAt = due;
    this.timer = setTimeout(() => this.flush(), Math.max(0, due - performance.now()));
  }

  flush() {
    this.timer = null;
    this.timerAt = Infinity;
    // Timers fire up to ~1 ms late; send what is due within half a millisecond.
    const now = performance.now() + 0.5;
    let i = 0;
    while (i < this.queue.length && this.queue[i].due <= now) {
      const { size, send } = this.queue[i];
      this.deliver(size, send);
      i += 1;
    }
    if (i > 0) this.queue.splice(0, i);
    this.schedule();
  }
}

const up = new Direction('up');
const down = new Direction('down');
const listener = dgram.createSocket({ type: 'udp4', recvBufferSize: BUFFER, sendBufferSize: BUFFER });
const clients = new Map(); // "addr:port" -> upstream socket

function upstreamFor(address, port) {
  const key = `${address}:${port}`;
  let socket = clients.get(key);
  if (socket) return socket;
  socket = dgram.createSocket({ type: 'udp4', recvBufferSize: BUFFER, sendBufferSize: BUFFER });
  socket.on('message', (message) => {
    down.push(message.length, () => listener.send(message, port, address));
  });
  socket.on('error', (error) => console.error(`impair: upstream ${key}: ${error.message}`));
  socket.bind(0);
  clients.set(key, socket);
  return socket;
}

listener.on('message', (message, from) => {
  const socket = upstreamFor(from.address, from.port);
  up.push(message.length, () => socket.send(message, targetPort, targetHost));
});
listener.on('error', (error) => {
  console.error(`impair: ${error.message}`);
  process.exit(1);
});

function reply(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

const directions = (dir) => (dir === 'up' ? [up] : dir === 'down' ? [down] : [up, down]);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    reply({ error: `bad command: ${error.message}` });
    return;
  }
  if (command.set) {
    if (command.set.up || command.set.down) {
      up.set(command.set.up);
      down.set(command.set.down);
    } else {
      up.set(command.set);
      down.set(command.set);
    }
    reply({ ok: 'set', up: up.params, down: down.params });
  } else if (command.burst) {
    const until = performance.now() + Number(command.burst.ms ?? 0);
    for (const d of directions(command.burst.dir)) d.burstUntil = until;
    reply({ ok: 'burst' });
  } else if (command.stats) {
    reply({ stats: { up: up.counters, down: down.counters, clients: clients.size } });
  } else if (command.reset) {
    up.counters = newCounters();
    down.counters = newCounters();
    reply({ ok: 'reset' });
  } else {
    reply({ error: 'unknown command' });
  }
}).on('close', () => process.exit(0));

listener.bind(0, listenHost, () => reply({ port: listener.address().port }));
