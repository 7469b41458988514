/**
 * The statements of a promotion, on an open admin session: fence a primary, wait until a replica
 * has applied a GTID position, promote a replica. One home for them: the step-by-step activities
 * (`fenceOldPrimary`, `waitForCatchUp`, `promoteCandidate`) and the one-activity critical section
 * of a planned switchover (`handOverWrites`) both run these, so they cannot drift apart.
 *
 * Each checks the server's state before it changes it, so running it again after a crash finds
 * its change made and reports so (already read-only, already promoted).
 */
import { ApplicationFailure } from '@temporalio/common';
import { getInstance, type RunbookConfig } from '../../config/load';
import type { InstanceRef } from '../../core/types';
import { query, type Conn } from './connect';
import type { Dialect, ReplicaStatus, ServerVariables } from './dialect';
import { dialectOf } from './probe';
import { openInstanceConnection } from './instance';

export interface Session {
  instance: string;
  conn: Conn;
  dialect: Dialect;
  vars(): Promise<ServerVariables>;
  replica(): Promise<ReplicaStatus | null>;
  exec(sql: string, params?: unknown[]): Promise<unknown>;
  close(): void;
}

export const refuse = (message: string, type = 'PreconditionFailed') => ApplicationFailure.nonRetryable(message, type);

/** An admin session on one instance, its flavour read; unreachable is retryable (a restart ends soon). */
export async function openSession(config: RunbookConfig, ref: InstanceRef): Promise<Session> {
  const conn = await openInstanceConnection(config, ref);
  try {
    const { dialect } = await dialectOf(conn);
    return {
      instance: ref.instance,
      conn,
      dialect,
      vars: async () => dialect.parseVariables((await query<Record<string, unknown>[]>(conn, dialect.variablesQuery()))[0]!),
      replica: async () => dialect.parseReplicaStatus(await query<Record<string, unknown>[]>(conn, dialect.replicaStatusQuery())),
      exec: (sql, params = []) => query(conn, sql, params, 30_000),
      close: () => conn.destroy(),
    };
  } catch (err) {
    conn.destroy();
    throw err;
  }
}

/** A time-bounded admin session on one instance, always closed. */
export async function withSession<T>(config: RunbookConfig, ref: InstanceRef, fn: (s: Session) => Promise<T>): Promise<T> {
  const s = await openSession(config, ref);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

/** The server's GTID position (MariaDB gtid_current_pos, MySQL gtid_executed). */
export function position(v: ServerVariables): string {
  return v.gtid.currentPos ?? v.gtid.executed ?? '';
}

export function addressOf(config: RunbookConfig, cluster: string, instance: string): { host: string; port: number } {
  const i = getInstance(config, cluster, instance);
  return { host: i.host, port: i.port };
}

export function sameAddress(status: ReplicaStatus, addr: { host: string; port: number }): boolean {
  const norm = (h: string | null) => (h === 'localhost' || h === '::1' ? '127.0.0.1' : h);
  return status.sourcePort === addr.port && norm(status.sourceHost) === norm(addr.host);
}

export type Fenced = {
  alreadyReadOnly: boolean;
  killedSessions: number;
  finalPosition: string;
};

/**
 * Fence a primary: read_only on (super_read_only too on MySQL 8), end the client sessions that
 * could still write (never replication threads), and report the final GTID position, the point a
 * candidate must reach. Safe to repeat: a second run kills any session that slipped in and reports
 * the same position.
 */
export async function fenceWrites(s: Session): Promise<Fenced> {
  const before = await s.vars();
  if (await s.replica()) throw refuse(`${s.instance} is a replica, not the primary: refusing to fence it`);
  let killed = 0;
  const killClientSessions = async () => {
    const sessions = await query<{ id: number | string }[]>(s.conn, s.dialect.clientSessionsQuery());
    for (const session of sessions) {
      try {
        await s.exec(s.dialect.killConnection(Number(session.id)));
        killed++;
      } catch (err) {
        if ((err as { errno?: number }).errno !== 1094) throw err; // 1094: unknown thread id (already gone)
      }
    }
  };
  // SET GLOBAL read_only waits for running writes; a stuck one must not hold the fence for
  // lock_wait_timeout's default of a year: bound it, end the client sessions, try again.
  await s.exec('SET SESSION lock_wait_timeout = 5');
  if (!before.readOnly || before.superReadOnly === false) {
    try {
      for (const sql of s.dialect.setReadOnly(true)) await s.exec(sql);
    } catch (err) {
      if ((err as { errno?: number }).errno !== 1205) throw err;
      await killClientSessions();
      for (const sql of s.dialect.setReadOnly(true)) await s.exec(sql);
    }
  }
  await killClientSessions();
  const after = await s.vars();
  if (!after.readOnly) throw ApplicationFailure.retryable(`${s.instance} is still writable after SET GLOBAL read_only`);
  return { alreadyReadOnly: before.readOnly, killedSessions: killed, finalPosition: after.gtid.binlogPos ?? position(after) };
}

/**
 * Writable again, but only if it is still a primary (replicates from nobody), so an undo can never
 * make a replica writable.
 */
export async function unfenceWrites(s: Session): Promise<{ changed: boolean }> {
  if (await s.replica()) throw refuse(`${s.instance} now replicates from another server: leaving it read-only`);
  const v = await s.vars();
  if (!v.readOnly && v.superReadOnly !== true) return { changed: false };
  for (const sql of s.dialect.setReadOnly(false)) await s.exec(sql);
  return { changed: true };
}

/**
 * Wait until the replica has applied up to `target`, until `deadline` (epoch ms). MASTER_GTID_WAIT
 * keeps waiting even when replication stops, so it is called in slices of at most `sliceSeconds`
 * with a check of both threads in between; a stopped thread fails at once instead of burning the
 * timeout. `beat` is called before each slice (an activity's heartbeat); `cancelled` ends the wait.
 */
export async function waitForApplied(
  s: Session,
  target: string,
  deadline: number,
  o: {
    timeoutSeconds: number;
    sliceSeconds?: number;
    beat?: () => void;
    cancelled?: () => boolean;
    /**
     * While writes are blocked every round trip is part of the outage: report `target` (which the
     * wait proved applied) instead of reading the position again.
     */
    reportTarget?: boolean;
  },
): Promise<{ waitedMs: number; appliedPosition: string }> {
  const started = Date.now();
  for (;;) {
    o.beat?.();
    const slice = Math.max(0.1, Math.min(o.sliceSeconds ?? 1, (deadline - Date.now()) / 1000));
    const wait = s.dialect.waitForGtid(target, slice);
    const [row] = await query<Record<string, unknown>[]>(s.conn, wait.sql, wait.params, (slice + 5) * 1000);
    if (wait.interpret(row!) === 'reached') return { waitedMs: Date.now() - started, appliedPosition: o.reportTarget ? target : position(await s.vars()) };
    const r = await s.replica();
    if (!r) throw refuse(`${s.instance} stopped being a replica while catching up`);
    if (r.sqlRunning !== 'Yes' || r.lastSqlErrno) {
      throw refuse(`replication SQL thread on ${s.instance} is ${r.sqlRunning} while catching up${r.lastSqlError ? `: ${r.lastSqlError}` : ''}`, 'ReplicationBroken');
    }
    if (r.ioRunning === 'No') throw refuse(`replication IO thread on ${s.instance} stopped while catching up${r.lastIoError ? `: ${r.lastIoError}` : ''}`, 'ReplicationBroken');
    if (Date.now() >= deadline) {
      throw refuse(`${s.instance} did not apply up to ${target} within ${o.timeoutSeconds} s (it is at ${position(await s.vars())})`, 'CatchUpTimeout');
    }
    if (o.cancelled?.()) throw ApplicationFailure.retryable('cancelled while waiting for catch-up');
  }
}

/** Whether a session's server is a promoted primary: replicates from nobody and is writable. */
export async function isPromoted(s: Session): Promise<{ promoted: boolean; replica: ReplicaStatus | null; vars: ServerVariables }> {
  const replica = await s.replica();
  const vars = await s.vars();
  return { promoted: !replica && !vars.readOnly, replica, vars };
}

/**
 * Promote a replica: stop replication, forget its source, writable. Already promoted (no source,
 * writable) is success; a crash between the statements is finished on retry. With
 * `expectedSource`, a replica of another server is refused.
 */
export async function promoteReplica(
  s: Session,
  expectedSource?: { instance: string; host: string; port: number },
  /**
   * What the caller saw of this server on this same session moments ago, inside the same attempt
   * (the hand-over checks it before the fence, and its catch-up wait just proved it applies from
   * that source): not read again while writes are blocked.
   */
  checked?: { replica: ReplicaStatus },
): Promise<{ alreadyPromoted: boolean; position: string }> {
  const { promoted, replica: r, vars: v } = checked ? { promoted: false, replica: checked.replica, vars: undefined } : await isPromoted(s);
  if (promoted) return { alreadyPromoted: true, position: position(v!) };
  if (r && expectedSource && !sameAddress(r, expectedSource)) {
    throw refuse(`${s.instance} replicates from ${r.sourceHost}:${r.sourcePort}, not from ${expectedSource.instance}: refusing to promote it`);
  }
  if (r) {
    await s.exec(s.dialect.stopReplica());
    await s.exec(s.dialect.resetReplicaAll());
  }
  for (const sql of s.dialect.setReadOnly(false)) await s.exec(sql);
  return { alreadyPromoted: false, position: position(await s.vars()) };
}
