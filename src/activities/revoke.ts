/**
 * Activities of the revoke runbook: thin, over src/adapters/mysql/grants.ts (SQL) and the
 * incident's folder `<backupDir>/<cluster>/revoke/<incident>/` (snapshot, report). Each checks
 * before it acts: applying recomputes what is left to do from the server as it is now and runs
 * only statements the approved plan holds; the KILL sweep lists the sessions again and ends only
 * those still there; enabling audit leaves what is already on.
 */
import { Context, heartbeat, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  connectionId, enableAudit, serverClock, killConnection, listSessions, missingObjects, readCatalog, readGrants, readReadEvidence, runStatements,
  type AuditEnabled, type Evidence,
} from '../adapters/mysql/grants';
import { readWriteEvidence } from '../adapters/backup/writeEvidence';
import { getCluster, getInstance, resolveCredential } from '../config/load';
import { grantStatements, sessionsOf, type GrantState, type InstanceCatalog, type SessionInfo, type TableRef } from '../core/grants';
import { query } from '../adapters/mysql/connect';
import { dialectOf } from '../adapters/mysql/probe';
import { incidentIdProblem } from '../core/inputs';
import type { ActivityDeps } from './deps';
import { withInstance } from '../adapters/mysql/instance';

export interface InstanceGrantState {
  instance: string;
  grants: GrantState;
  catalog: InstanceCatalog;
  sessions: SessionInfo[];
  missingObjects: string[];
  /** The server's gtid_binlog_pos when read. */
  position: string;
  /** When it was read (the server's clock, epoch ms). */
  readAt: number;
}

export interface ApplyResult {
  instance: string;
  /** Statements this attempt ran (an earlier attempt's are already in effect and not repeated). */
  executed: { sql: string; binlog: boolean }[];
  /** gtid_binlog_pos after the change: what the replicas must reach. */
  position: string;
  /** A connection id taken after the change: sessions below it connected before it. */
  watermark: number;
}

export interface SweepResult {
  instance: string;
  /** Sessions this attempt ended with KILL CONNECTION. */
  killed: SessionInfo[];
  /** Affected sessions seen at the assessment that were already gone (an earlier attempt, or they ended). */
  alreadyGone: number[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function createRevokeActivities({ config }: ActivityDeps) {
  const on = <T>(cluster: string, instance: string, fn: Parameters<typeof withInstance<T>>[2]) => withInstance(config, { cluster, instance }, fn);

  const incidentDir = (cluster: string, incidentId: string) => {
    const bad = incidentIdProblem('incident', incidentId, { required: true });
    if (bad) throw ApplicationFailure.nonRetryable(bad, 'BadInput');
    getCluster(config, cluster);
    return join(config.backupDir, cluster, 'revoke', incidentId);
  };

  const position = async (conn: Parameters<typeof query>[0]) => String((await query<{ p: string }[]>(conn, 'SELECT @@gtid_binlog_pos AS p'))[0]!.p ?? '');

  return {
    /** Every grantee's grants, the catalog around the objects and the live sessions of one instance. */
    async readGrantState(input: { cluster: string; instance: string; objects: TableRef[] }): Promise<InstanceGrantState> {
      return on(input.cluster, input.instance, async (conn) => ({
        instance: input.instance,
        grants: await readGrants(conn),
        catalog: await readCatalog(conn, input.objects),
        sessions: await listSessions(conn),
        missingObjects: await missingObjects(conn, input.objects),
        position: await position(conn),
        readAt: (await serverClock(conn)).now,
      }));
    },

    /** The engine's own accounts on a cluster (admin, replication): never contained. */
    async engineUsers(input: { cluster: string }): Promise<string[]> {
      const c = getCluster(config, input.cluster).credentials;
      return [c.admin.user, c.replication.user];
    },

    /**
     * A file kept with the incident. `once`: written only if absent, and the stored content is
     * returned either way, so a retried or re-run incident keeps its first snapshot (the state to
     * undo to), never one taken after part of the change was made.
     */
    async writeIncidentFile(input: { cluster: string; incidentId: string; name: string; content: string; once?: boolean }): Promise<{ path: string; sha256: string; kept: boolean; content?: string }> {
      const path = join(incidentDir(input.cluster, input.incidentId), input.name);
      if (input.once) {
        const existing = await readFile(path, 'utf8').catch(() => undefined);
        if (existing !== undefined) return { path, sha256: sha(existing), kept: true, content: existing === input.content ? undefined : existing };
      }
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.tmp-${process.pid}`;
      await writeFile(tmp, input.content, { mode: 0o600 });
      await rename(tmp, path);
      return { path, sha256: sha(input.content), kept: false };
    },

    async readIncidentFile(input: { cluster: string; incidentId: string; name: string }): Promise<string> {
      const path = join(incidentDir(input.cluster, input.incidentId), input.name);
      try {
        return await readFile(path, 'utf8');
      } catch {
        throw ApplicationFailure.nonRetryable(`no ${input.name} for incident ${input.incidentId} of ${input.cluster} (${path})`, 'NoSuchIncident');
      }
    },

    /**
     * Bring the grantees of `targets` to those states on one instance. What is left to do is
     * computed from the server now; each statement must be one the approved plan holds for this
     * instance (binlogged or not, as approved), else nothing more is run and the step fails: the
     * server changed since the approval. On a replica it first waits until `waitFor` (the
     * primary's position after its change) is applied, and fails at once if replication stopped.
     */
    async applyGrantChanges(input: { cluster: string; instance: string; approved: { sql: string; binlog: boolean }[]; targets: GrantState; waitFor?: string; timeoutSeconds?: number }): Promise<ApplyResult> {
      if (input.waitFor) await waitForPosition(input.cluster, input.instance, input.waitFor, input.timeoutSeconds ?? 60);
      return on(input.cluster, input.instance, async (conn) => {
        const current = await readGrants(conn, new Set(Object.keys(input.targets)));
        const todo: { sql: string; binlog: boolean }[] = [];
        for (const [key, target] of Object.entries(input.targets)) {
          const from = current[key];
          if (!from) continue; // not on this server (drift): the plan says so
          for (const sql of grantStatements(from, target)) {
            const ok = input.approved.find((a) => a.sql === sql);
            if (!ok) {
              throw ApplicationFailure.nonRetryable(`${input.instance}: \`${sql}\` is needed to reach the approved state but is not in the approved plan: the grants changed since the approval; nothing more was run`, 'PlanOutdated');
            }
            todo.push(ok);
          }
        }
        await runStatements(conn, todo, () => heartbeat());
        const after = await readGrants(conn, new Set(Object.keys(input.targets)));
        for (const [key, target] of Object.entries(input.targets)) {
          if (after[key] && grantStatements(after[key]!, target).length) throw ApplicationFailure.nonRetryable(`${input.instance}: ${key} is not in the approved state after the change`, 'VerificationFailed');
        }
        const fresh = await on(input.cluster, input.instance, connectionId);
        return { instance: input.instance, executed: todo, position: await position(conn), watermark: fresh };
      });
    },

    /**
     * End the sessions of the accounts that connected before `below` on one instance (KILL does
     * not replicate: every instance gets its own sweep), and wait until they are gone. A retry
     * lists them again: a session ended by an earlier attempt is not there any more, and a session
     * that connected after the change (id ≥ below) is never touched.
     */
    async endSessions(input: { cluster: string; instance: string; accounts: { user: string; host: string }[]; below: number; expected?: number[] }): Promise<SweepResult> {
      const killed: SessionInfo[] = [];
      heartbeat({ killed: [] as number[] });
      return on(input.cluster, input.instance, async (conn) => {
        const affected = sessionsOf(await listSessions(conn), input.accounts, input.below);
        for (const s of affected) {
          if ((await killConnection(conn, s.id)) === 'killed') killed.push(s);
          heartbeat({ killed: killed.map((k) => k.id) });
        }
        for (let i = 0; ; i++) {
          const left = sessionsOf(await listSessions(conn), input.accounts, input.below);
          if (!left.length) break;
          // A killed session ends at its next check of the kill flag; a new one below the mark cannot appear.
          if (i >= 300) throw ApplicationFailure.retryable(`${input.instance}: ${left.length} session(s) still there after KILL: ${left.map((s) => s.id).join(', ')}`);
          heartbeat({ killed: killed.map((k) => k.id) });
          await sleep(100);
        }
        const present = new Set(affected.map((s) => s.id));
        return { instance: input.instance, killed, alreadyGone: (input.expected ?? []).filter((id) => !present.has(id)) };
      });
    },

    /** server_audit (or general_log where the plugin cannot be loaded) recording reads from now on. */
    async enableReadAudit(input: { cluster: string; instance: string }): Promise<AuditEnabled & { instance: string }> {
      return { instance: input.instance, ...(await on(input.cluster, input.instance, enableAudit)) };
    },

    /** What this instance recorded about the objects in the window; writes from the binlog on the primary. */
    async collectAccessEvidence(input: { cluster: string; instance: string; objects: TableRef[]; since: number; until?: number; primary: boolean }): Promise<Evidence & { until: number }> {
      const inst = getInstance(config, input.cluster, input.instance);
      // The server_audit file is read where the worker shares the server's filesystem (a loopback instance).
      const local = LOOPBACK.has(inst.host);
      return on(input.cluster, input.instance, async (conn) => {
        const until = input.until ?? (await serverClock(conn)).now;
        const reads = await readReadEvidence(conn, input.instance, input.objects, input.since, until, { localFiles: local });
        if (!input.primary) return { ...reads, until };
        const credentials = resolveCredential(getCluster(config, input.cluster).credentials.admin);
        const writes = await readWriteEvidence(conn, { host: inst.host, port: inst.port, credentials }, input.instance, input.objects, input.since, until);
        return { sources: [...reads.sources, ...writes.sources], events: [...reads.events, ...writes.events], until };
      });
    },
  };

  /** MASTER_GTID_WAIT in one-second slices, failing at once when the SQL thread stopped (a replicated statement it could not apply). */
  async function waitForPosition(cluster: string, instance: string, pos: string, timeoutSeconds: number): Promise<void> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    await on(cluster, instance, async (conn) => {
      const { dialect } = await dialectOf(conn);
      for (;;) {
        heartbeat();
        const wait = dialect.waitForGtid(pos, 1);
        const [row] = await query<Record<string, unknown>[]>(conn, wait.sql, wait.params, 10_000);
        if (wait.interpret(row!) === 'reached') return;
        const r = dialect.parseReplicaStatus(await query<Record<string, unknown>[]>(conn, dialect.replicaStatusQuery()));
        if (!r) throw ApplicationFailure.nonRetryable(`${instance} does not replicate: it cannot receive ${pos}`, 'ReplicationBroken');
        if (r.sqlRunning !== 'Yes' || r.lastSqlErrno) throw ApplicationFailure.nonRetryable(`${instance}'s SQL thread is ${r.sqlRunning}: ${r.lastSqlError ?? 'stopped'}`, 'ReplicationBroken');
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`${instance} did not apply ${pos} within ${timeoutSeconds} s`, 'CatchUpTimeout');
        if (Context.current().cancellationSignal.aborted) throw ApplicationFailure.retryable('cancelled');
      }
    });
  }
}

function sha(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
