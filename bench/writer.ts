/**
 * The failover bench's own writer, in its own process so that it shares no event loop with the
 * worker under test: an application client that writes as fast as it can through an account
 * without SUPER / READ ONLY ADMIN (read_only stops it) and follows whichever instance accepts its
 * writes. It knows nothing of the runbook engine: no writer endpoint, no Temporal.
 *
 * - Every acknowledged insert is recorded (id, instance, time), so the bench can prove afterwards
 *   that none was lost and measure the write-unavailability windows (last ack on the old writer →
 *   first ack on the new one).
 * - When its writer refuses (read-only, session killed, down) it tries every instance in turn on
 *   connections it keeps open, until one acknowledges.
 * - A prober, on its own connections, reads @@read_only on every instance every few milliseconds
 *   and counts the samples in which two instances were writable at once (two writers).
 *
 * Started by bench/failover.ts with the instances as JSON in BENCH_WRITER; on the 'stop' message it
 * sends back { acks, errors, probes, twoWriterSamples } and exits.
 */
import mysql from 'mysql2/promise';

interface Target {
  name: string;
  host: string;
  port: number;
}
interface Spec {
  instances: Target[];
  user: string;
  password: string;
  /** Ids start here (a run's own range, so runs never collide). */
  firstId: number;
}

const spec = JSON.parse(process.env.BENCH_WRITER!) as Spec;
const acks: [number, string, number][] = []; // id, instance, epoch ms (fractional)
let errors = 0;
let probes = 0;
const twoWriters: { at: number; writable: string[] }[] = [];
let running = true;
const now = () => performance.timeOrigin + performance.now();

async function open(t: Target): Promise<mysql.Connection | undefined> {
  try {
    const c = await mysql.createConnection({ host: t.host, port: t.port, user: spec.user, password: spec.password, connectTimeout: 1000 });
    c.on('error', () => {});
    return c;
  } catch {
    return undefined;
  }
}

async function writeLoop(): Promise<void> {
  const conns = new Map<string, mysql.Connection | undefined>();
  let current = 0;
  let next = spec.firstId;
  while (running) {
    const t = spec.instances[current]!;
    let c = conns.get(t.name);
    if (!c) conns.set(t.name, (c = await open(t)));
    if (c) {
      try {
        await c.query('INSERT INTO loadtest.acks VALUES (?, ?, NOW(6))', [next, t.name]);
        acks.push([next, t.name, now()]);
        next++;
        continue; // as fast as it can, on the instance that took it
      } catch (err) {
        if ((err as { errno?: number }).errno === 1062) {
          // Duplicate key: an earlier attempt at this id committed and replicated but its reply was
          // lost with the killed primary. Not an ack; retrying the same id would stall forever.
          next++;
          continue;
        }
        errors++;
        // Read-only (1290) keeps the connection; a killed or dropped one is opened again.
        if ((err as { errno?: number }).errno !== 1290) {
          c.destroy();
          conns.set(t.name, undefined);
        }
      }
    }
    current = (current + 1) % spec.instances.length; // follow whichever instance accepts writes
    if (current === 0) await new Promise((r) => setImmediate(r));
  }
  for (const c of conns.values()) c?.destroy();
}

async function probeLoop(): Promise<void> {
  const conns = new Map<string, mysql.Connection | undefined>();
  while (running) {
    const states = await Promise.all(
      spec.instances.map(async (t) => {
        let c = conns.get(t.name);
        if (!c) conns.set(t.name, (c = await open(t)));
        if (!c) return false;
        try {
          const [rows] = await c.query('SELECT @@global.read_only AS ro');
          return Number((rows as { ro: number }[])[0]!.ro) === 0;
        } catch {
          c.destroy();
          conns.set(t.name, undefined);
          return false;
        }
      }),
    );
    probes++;
    const writable = spec.instances.filter((_, i) => states[i]).map((t) => t.name);
    if (writable.length > 1) twoWriters.push({ at: now(), writable });
    await new Promise((r) => setTimeout(r, 2));
  }
  for (const c of conns.values()) c?.destroy();
}

const loops = Promise.all([writeLoop(), probeLoop()]);
process.on('message', async (m) => {
  if (m !== 'stop') return;
  running = false;
  await loops;
  process.send!({ acks, errors, probes, twoWriters }, () => process.exit(0));
});
process.send!('ready');
