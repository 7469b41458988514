/**
 * Activities that touch the managed MySQL/MariaDB instances. Names in, credentials resolved here.
 *
 * Each one checks state before changing it (already read-only, already promoted, already
 * replicating from X), so a retry or a restarted worker does the right thing; a broken
 * precondition is a non-retryable failure with a message that says what is wrong.
 */
import { Context, heartbeat, sleep } from '@temporalio/activity';
import { getCluster, resolveCredential } from '../config/load';
import { query } from '../adapters/mysql/connect';
import { mariaErrantDomains } from '../core/gtid';
import { probeInstance, probeTopology } from '../adapters/mysql/probe';
import type { InstanceProbe, InstanceRef, Topology } from '../core/types';
import type { ActivityDeps } from './deps';
import { handOverWrites, type HandOverInput, type HandOverResult } from './handOver';
import { addressOf, fenceWrites, isPromoted, position, promoteReplica, refuse, sameAddress, unfenceWrites, waitForApplied, withSession, type Fenced } from '../adapters/mysql/switchover';

/** Whether a heartbeat-ing activity's cancellation (or worker shutdown) should stop a wait. */
function cancelled(): boolean {
  return Context.current().cancellationSignal.aborted;
}

export function createMysqlActivities({ config }: ActivityDeps) {
  return {
    /** What one instance says about itself; an unreachable instance is reported, not thrown. */
    async probeInstance(ref: InstanceRef): Promise<InstanceProbe> {
      return probeInstance(config, ref.cluster, ref.instance);
    },

    /** All instances probed in parallel, roles derived from what they say. */
    async probeTopology(cluster: string): Promise<Topology> {
      return probeTopology(config, cluster);
    },

    /** Fence the old primary (see fenceWrites): read-only, client sessions ended, its final position. */
    async fenceOldPrimary(ref: InstanceRef): Promise<Fenced> {
      return withSession(config, ref, fenceWrites);
    },

    /**
     * Undo a fence (compensation after a failed catch-up): writable again, but only if it is still
     * the primary (replicates from nobody), so a compensation can never make a replica writable;
     * and never once `unlessPromoted` (the candidate) took writes: that is two writers, and past the
     * point of no return the run rolls forward instead (`promoted: true` says so).
     */
    async unfencePrimary(ref: InstanceRef & { unlessPromoted?: string }): Promise<{ changed: boolean; promoted?: boolean }> {
      if (ref.unlessPromoted) {
        const promoted = await withSession(config, { cluster: ref.cluster, instance: ref.unlessPromoted }, async (s) => (await isPromoted(s)).promoted);
        if (promoted) return { changed: false, promoted: true };
      }
      return withSession(config, ref, unfenceWrites);
    },

    /** Wait until the candidate has applied up to `position`, within `timeoutSeconds` (see waitForApplied). */
    async waitForCatchUp(input: InstanceRef & { position: string; timeoutSeconds: number }): Promise<{ waitedMs: number; appliedPosition: string }> {
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      return withSession(config, input, (s) => waitForApplied(s, input.position, deadline, { timeoutSeconds: input.timeoutSeconds, beat: () => heartbeat(), cancelled }));
    },

    /**
     * A planned switchover's critical section in one activity (fence → catch-up → promote → writer
     * endpoint, each sub-step reported with its own times): see handOver.ts.
     */
    async handOverWrites(input: HandOverInput): Promise<HandOverResult> {
      return handOverWrites(config, input);
    },

    /** Promote the candidate (see promoteReplica): already promoted is success. */
    async promoteCandidate(input: InstanceRef & { expectedSource?: string }): Promise<{ alreadyPromoted: boolean; position: string }> {
      const source = input.expectedSource ? { instance: input.expectedSource, ...addressOf(config, input.cluster, input.expectedSource) } : undefined;
      return withSession(config, input, (s) => promoteReplica(s, source));
    },

    /**
     * Make an instance replicate from the new primary with GTID auto-positioning. Already doing so
     * is success. Refused when the instance has transactions the new primary lacks (it needs a
     * reseed, not a repoint). A demoted primary's slave position is stale, and under strict mode
     * replicating from it fails as out-of-order; so the slave position is set from the instance's
     * current position, and only after the errant check has proven that safe.
     */
    async repointReplica(input: InstanceRef & { newPrimary: string }): Promise<{ alreadyReplicating: boolean; fromPosition: string }> {
      const target = addressOf(config, input.cluster, input.newPrimary);
      const repl = resolveCredential(getCluster(config, input.cluster).credentials.replication);
      return withSession(config, input, async (s) => {
        const r = await s.replica();
        if (r && sameAddress(r, target) && r.sqlRunning === 'Yes' && r.ioRunning !== 'No') {
          return { alreadyReplicating: true, fromPosition: position(await s.vars()) };
        }
        // Stop first, then read the position: a replica still applying would otherwise move past
        // the position we read, and re-fetching from there is an out-of-order error under strict mode.
        if (r) await s.exec(s.dialect.stopReplica());
        const v = await s.vars();
        // The new primary's position only grows: read it after this instance stopped moving, or
        // events this instance received meanwhile (say, through a repointed old primary) look errant.
        const primaryPos = await withSession(config, { cluster: input.cluster, instance: input.newPrimary }, async (p) => position(await p.vars()));
        const errant = s.dialect.flavor === 'mariadb' ? mariaErrantDomains(position(v), primaryPos) : [];
        if (errant.length) {
          if (r) await s.exec(s.dialect.startReplica()); // leave it as we found it
          const list = errant.map((e) => `domain ${e.domain} (${input.instance} at ${e.candidateSeq}, ${input.newPrimary} at ${e.primarySeq ?? 'none'})`).join(', ');
          throw refuse(`${input.instance} has transactions ${input.newPrimary} lacks: ${list}; it needs a reseed (failback), not a repoint`, 'ErrantTransactions');
        }
        if (!v.readOnly) for (const sql of s.dialect.setReadOnly(true)) await s.exec(sql);
        if (s.dialect.flavor === 'mariadb') {
          const setPos = s.dialect.setGtidSlavePos(position(v));
          await s.exec(setPos.sql, setPos.params);
        }
        const change = s.dialect.changePrimary({ host: target.host, port: target.port, user: repl.user, password: repl.password, connectRetrySeconds: 1 });
        await s.exec(change.sql, change.params);
        await s.exec(s.dialect.startReplica());
        return { alreadyReplicating: false, fromPosition: position(v) };
      });
    },

    /** Emergency: stop receiving from the dead primary so positions stop moving while we compare. */
    async stopReplicationIo(ref: InstanceRef): Promise<{ receivedPosition: string | null }> {
      return withSession(config, ref, async (s) => {
        const r = await s.replica();
        if (!r) throw refuse(`${ref.instance} is not a replica`);
        if (r.ioRunning !== 'No') await s.exec(s.dialect.stopReplicaIoThread());
        return { receivedPosition: (await s.replica())?.receivedGtid ?? null };
      });
    },

    /** Emergency: wait until everything received (relay log) is applied, then report the instance. */
    async waitForRelayApplied(input: InstanceRef & { timeoutSeconds: number }): Promise<InstanceProbe> {
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      await withSession(config, input, async (s) => {
        const r = await s.replica();
        if (!r?.receivedGtid) return;
        for (;;) {
          heartbeat();
          const wait = s.dialect.waitForGtid(r.receivedGtid, 1);
          const [row] = await query<Record<string, unknown>[]>(s.conn, wait.sql, wait.params, 10_000);
          if (wait.interpret(row!) === 'reached') return;
          const now = await s.replica();
          if (now?.lastSqlErrno) throw refuse(`SQL thread on ${input.instance} failed applying its relay log: ${now.lastSqlError}`, 'ReplicationBroken');
          if (Date.now() > deadline) throw refuse(`${input.instance} did not apply its relay log (up to ${r.receivedGtid}) within ${input.timeoutSeconds} s`, 'CatchUpTimeout');
        }
      });
      return probeInstance(config, input.cluster, input.instance);
    },

    /**
     * Emergency: confirm the primary is really down. It must fail `attempts` probes started
     * `intervalMs` apart, AND every reachable replica's IO thread must have lost it too; a failure only the
     * engine sees (its own network blip) is refused. Replicas notice within slave_net_timeout, so
     * this waits up to `replicaGraceSeconds` after the last probe for them to agree. The replicas
     * are watched while the probes run (each look at most 250 ms old when the last probe fails),
     * so their verdict costs no time of its own when they already agree.
     */
    async confirmPrimaryDown(input: InstanceRef & { attempts: number; intervalMs: number; replicaGraceSeconds: number }): Promise<{ evidence: string[] }> {
      const replicas = getCluster(config, input.cluster).instances.filter((i) => i.name !== input.instance);
      let probesFailedAt: number | undefined;
      let stopped = false;
      type Look = { followers: InstanceProbe[]; stillConnected: InstanceProbe[] };
      let latest: Look | undefined;
      const look = async (): Promise<Look> => {
        const probes = await Promise.all(replicas.map((r) => probeInstance(config, input.cluster, r.name)));
        const followers = probes.filter((p) => p.reachable && p.replication?.sourceInstance === input.instance);
        return { followers, stillConnected: followers.filter((p) => p.replication!.ioRunning === 'Yes') };
      };
      // Looks at the replicas until the probes are done, then until they agree or the grace is over.
      const watch = (async (): Promise<Look> => {
        for (;;) {
          latest = await look();
          if (stopped) return latest;
          if (probesFailedAt !== undefined) {
            const { followers, stillConnected } = latest;
            if (followers.length && !stillConnected.length) return latest;
            if (!followers.length) throw refuse(`no reachable replica of ${input.instance}: cannot confirm the failure, and nothing to promote`, 'NoReplicas');
            if (Date.now() > probesFailedAt + input.replicaGraceSeconds * 1000) {
              throw refuse(
                `${input.instance} is unreachable from the engine, but ${stillConnected.map((p) => p.instance).join(', ')} still replicate from it: refusing a failover on a failure only the engine sees`,
                'PrimaryAlive',
              );
            }
          }
          heartbeat();
          await sleep(probesFailedAt === undefined ? 250 : 500);
        }
      })();
      watch.catch(() => undefined); // judged after the probes; a probe's refusal comes first
      const evidence: string[] = [];
      try {
        // Probe i starts (i - 1) × intervalMs after the first: a probe's own time does not stretch the spacing.
        const first = Date.now();
        for (let i = 1; i <= input.attempts; i++) {
          heartbeat();
          const p = await probeInstance(config, input.cluster, input.instance);
          if (p.reachable) throw refuse(`${input.instance} answered probe ${i} of ${input.attempts}: the primary is not down`, 'PrimaryAlive');
          evidence.push(`probe ${i}: ${p.error}`);
          if (i < input.attempts) await sleep(Math.max(0, first + i * input.intervalMs - Date.now()));
        }
      } catch (err) {
        stopped = true; // the watch ends after its current look, unawaited
        throw err;
      }
      probesFailedAt = Date.now();
      // The replicas' latest look, if it already agrees, is the verdict; otherwise the watch goes on.
      const agreed = latest && latest.followers.length && !latest.stillConnected.length ? latest : undefined;
      const verdict = agreed ?? (await watch);
      stopped = true;
      evidence.push(...verdict.followers.map((p) => `${p.instance}: IO thread ${p.replication!.ioRunning}${p.replication!.lastIoError ? ` (${p.replication!.lastIoError})` : ''}`));
      return { evidence };
    },

    /**
     * Verify the result: a heartbeat write on the new primary, every instance that was repointed
     * replicating from it with both threads running and that write applied, and exactly one
     * writable instance in the cluster.
     */
    async verifyCluster(input: { cluster: string; primary: string; replicas: string[]; workflowId: string; timeoutSeconds: number }): Promise<{ heartbeatPosition: string; replicas: string[] }> {
      const primaryRef = { cluster: input.cluster, instance: input.primary };
      const heartbeatPosition = await withSession(config, primaryRef, async (s) => {
        await s.exec('CREATE DATABASE IF NOT EXISTS runbook_heartbeat');
        await s.exec('CREATE TABLE IF NOT EXISTS runbook_heartbeat.heartbeat (id TINYINT PRIMARY KEY, written_at DATETIME(3) NOT NULL, writer VARCHAR(64) NOT NULL, workflow_id VARCHAR(255) NOT NULL)');
        await s.exec('REPLACE INTO runbook_heartbeat.heartbeat VALUES (1, UTC_TIMESTAMP(3), ?, ?)', [input.primary, input.workflowId]);
        return (await s.vars()).gtid.binlogPos ?? position(await s.vars());
      });
      const others = input.replicas;
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      // Each replica waits for the heartbeat itself (MASTER_GTID_WAIT returns the moment it is
      // applied), so the look at the whole cluster below usually passes the first time instead of
      // polling for it. A wait that fails (a thread stopped, the deadline) is not the verdict: the
      // look below is, and it names every problem.
      await Promise.all(
        others.map((instance) =>
          withSession(config, { cluster: input.cluster, instance }, (s) => waitForApplied(s, heartbeatPosition, deadline, { timeoutSeconds: input.timeoutSeconds, beat: () => heartbeat() })).catch(() => undefined),
        ),
      );
      for (;;) {
        heartbeat();
        const problems: string[] = [];
        const topology = await probeTopology(config, input.cluster);
        const writable = topology.instances.filter((i) => i.reachable && i.readOnly === false).map((i) => i.instance);
        if (writable.length !== 1 || writable[0] !== input.primary) problems.push(`writable instances: ${writable.join(', ') || 'none'} (expected only ${input.primary})`);
        for (const name of others) {
          const i = topology.instances.find((x) => x.instance === name)!;
          const r = i.replication;
          if (!i.reachable) problems.push(`${name} unreachable`);
          else if (!r || r.sourceInstance !== input.primary) problems.push(`${name} does not replicate from ${input.primary}`);
          else if (r.ioRunning !== 'Yes' || r.sqlRunning !== 'Yes') problems.push(`${name} IO ${r.ioRunning} SQL ${r.sqlRunning} ${r.lastIoError || r.lastSqlError}`.trim());
          else if (r.lagSeconds !== 0) problems.push(`${name} lag ${r.lagSeconds ?? 'unknown'} s`);
          else if (mariaErrantDomains(heartbeatPosition, i.gtid?.currentPos ?? '').length) problems.push(`${name} has not applied the heartbeat ${heartbeatPosition} yet`);
        }
        if (!problems.length) return { heartbeatPosition, replicas: others };
        if (Date.now() > deadline) throw refuse(`verification failed after ${input.timeoutSeconds} s: ${problems.join('; ')}`, 'VerificationFailed');
        await sleep(100);
      }
    },
  };
}
