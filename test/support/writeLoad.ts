/**
 * A client that writes continuously to whatever the writer endpoint names (as an application or a
 * proxy would) and records every acknowledged insert, so a test or a benchmark can prove that no
 * acknowledged write was lost and measure the write-unavailability window of a failover.
 * It writes as an application user without SUPER / READ ONLY ADMIN, so read_only stops it.
 */
import mysql from 'mysql2/promise';
import type { RunbookConfig } from '../../src/config/load';
import { getCluster, getInstance } from '../../src/config/load';
import { withControl } from '../../src/adapters/control/store';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';

export interface Ack {
  id: number;
  instance: string;
  at: number;
}

const APP = { user: 'load_app', passwordEnv: 'LOAD_APP_PASSWORD' };
process.env.LOAD_APP_PASSWORD ??= 'load-app-password';

/** Create the application user and table on the primary; both replicate to every replica. */
export async function prepareLoadSchema(config: RunbookConfig, cluster: string, primary: string): Promise<void> {
  const conn = await connect(instanceEndpoint(config, cluster, primary));
  try {
    await conn.query('CREATE DATABASE IF NOT EXISTS loadtest');
    await conn.query('CREATE TABLE IF NOT EXISTS loadtest.acks (id BIGINT PRIMARY KEY, via VARCHAR(64) NOT NULL, written_at DATETIME(6) NOT NULL)');
    await conn.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', [APP.user, '%', process.env[APP.passwordEnv]]);
    await conn.query('GRANT SELECT, INSERT ON loadtest.* TO ?@?', [APP.user, '%']);
  } finally {
    conn.destroy();
  }
}

export class WriteLoad {
  readonly acks: Ack[] = [];
  errors = 0;
  /**
   * Ids whose insert committed although its acknowledgement never arrived (the primary was killed
   * between its commit and its reply, and the row had replicated). Not acks: nothing promised them.
   */
  readonly inDoubt: number[] = [];
  /** The last refusal, for a test that times out waiting for writes to say why. */
  lastError = '';
  private next: number | undefined;
  private running = false;
  private loop?: Promise<void>;

  constructor(
    private readonly config: RunbookConfig,
    private readonly cluster: string,
    private readonly initialWriter: string,
    private readonly pauseMs = 2,
    /**
     * The first id written. By default, past every id already in the table: a second load on the
     * same table (the next test in a file) must not retry a duplicate key forever.
     */
    firstId?: number,
  ) {
    this.next = firstId;
  }

  /** The writer endpoint row (the built-in traffic switch), else the initial primary. */
  private async writer(): Promise<string> {
    const rows = await withControl(this.config, async (c) => {
      const [r] = await c.query('SELECT instance FROM writer_endpoint WHERE cluster = ?', [this.cluster]).catch(() => [[]]);
      return r as { instance: string }[];
    }, 1000).catch(() => []);
    return rows[0]?.instance ?? this.initialWriter;
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let conn: mysql.Connection | undefined;
    let via = '';
    while (this.running) {
      try {
        if (!conn) {
          via = await this.writer();
          const inst = getInstance(this.config, this.cluster, via);
          conn = await mysql.createConnection({ host: inst.host, port: inst.port, user: APP.user, password: process.env[APP.passwordEnv], connectTimeout: 1000 });
          conn.on('error', () => {});
        }
        if (this.next === undefined) {
          const [rows] = await conn.query('SELECT COALESCE(MAX(id), 0) + 1 AS next FROM loadtest.acks');
          this.next = Number((rows as { next: string | number }[])[0]!.next);
        }
        const id = this.next;
        await conn.query('INSERT INTO loadtest.acks VALUES (?, ?, NOW(6))', [id, via]);
        this.next++;
        this.acks.push({ id, instance: via, at: Date.now() });
      } catch (err) {
        this.lastError = `${via}: ${(err as Error).message}`;
        if ((err as { errno?: number }).errno === 1062) {
          // Duplicate key: an earlier attempt at this id committed and replicated but its reply was
          // lost with the old primary. Retrying the same id would fail forever; move past it.
          this.inDoubt.push(this.next!);
          this.next!++;
          continue;
        }
        // Read-only, killed or refused: this insert was not acknowledged; find the writer again.
        this.errors++;
        conn?.destroy();
        conn = undefined;
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      if (this.pauseMs) await new Promise((r) => setTimeout(r, this.pauseMs));
    }
    conn?.destroy();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Acknowledged ids missing on `instance`. */
  async missingOn(instance: string): Promise<number[]> {
    const conn = await connect(instanceEndpoint(this.config, this.cluster, instance));
    try {
      const [rows] = await conn.query('SELECT id FROM loadtest.acks');
      const present = new Set((rows as { id: string | number }[]).map((r) => Number(r.id)));
      return this.acks.filter((a) => !present.has(a.id)).map((a) => a.id);
    } finally {
      conn.destroy();
    }
  }

  /** For each change of writer: last ack on the old one → first ack on the new one (ms). */
  unavailabilityWindows(): { from: string; to: string; ms: number }[] {
    const out: { from: string; to: string; ms: number }[] = [];
    for (let i = 1; i < this.acks.length; i++) {
      const a = this.acks[i - 1]!;
      const b = this.acks[i]!;
      if (a.instance !== b.instance) out.push({ from: a.instance, to: b.instance, ms: b.at - a.at });
    }
    return out;
  }
}

export function clusterInstances(config: RunbookConfig, cluster: string): string[] {
  return getCluster(config, cluster).instances.map((i) => i.name);
}
