/** What the revoke tests share: logging in as a test account, reading grants, waiting for the replicas. */
import mysql from 'mysql2/promise';
import { readGrants } from '../../src/adapters/mysql/grants';
import type { RunbookConfig } from '../../src/config/load';
import type { GrantState } from '../../src/core/grants';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { eventually } from './sandbox';
import { rowsOn } from './stack';

/** Connections a test opened as its accounts; `closeLogins` in afterAll. */
const opened: mysql.Connection[] = [];

/** A session of `user` on an instance of `orders` (the tests' accounts all have password `pw` unless said). */
export async function login(config: RunbookConfig, instance: string, user: string, password = 'pw'): Promise<mysql.Connection> {
  const i = config.clusters.orders!.instances.find((x) => x.name === instance)!;
  const c = await mysql.createConnection({ host: i.host, port: i.port, user, password, connectTimeout: 5000 });
  c.on('error', () => {});
  opened.push(c);
  return c;
}

export function closeLogins(): void {
  for (const c of opened.splice(0)) c.destroy();
}

export async function connectionIdOf(c: mysql.Connection): Promise<number> {
  return Number(((await c.query('SELECT CONNECTION_ID() AS id'))[0] as { id: number }[])[0]!.id);
}

/** Whether a session is still in the instance's processlist. */
export async function sessionAlive(config: RunbookConfig, instance: string, id: number): Promise<boolean> {
  return (await rowsOn(config, instance, `SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ${Math.trunc(id)}`)).length === 1;
}

/** The server error number a promise fails with (undefined if it succeeds). */
export async function errnoOf(p: Promise<unknown>): Promise<number | undefined> {
  return ((await p.then(() => undefined, (e: { errno?: number }) => e)) as { errno?: number } | undefined)?.errno;
}

/** Every grantee's grants on an instance, as the runbook reads them. */
export async function grantsOn(config: RunbookConfig, instance: string, only?: Set<string>): Promise<GrantState> {
  const c = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    return await readGrants(c, only);
  } finally {
    c.destroy();
  }
}

/** Wait until both replicas applied everything the primary has written. */
export async function replicated(config: RunbookConfig): Promise<void> {
  const target = String((await rowsOn(config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
  for (const r of ['orders-b', 'orders-c']) await eventually(`${r} at ${target}`, async () => (await rowsOn(config, r, 'SELECT @@gtid_slave_pos AS p'))[0]!.p === target);
}
