/**
 * Activities of the failback runbook: fence the returning old primary (read-only before anything
 * else, even if it restarted writable; never the instance the writer endpoint names), compare its
 * binlog history with the current primary's and export what only it holds, check that the
 * primary has not changed (the switch back's compare-and-swap), and take a reseeded member off
 * the backup lineage's stale list. Each checks state before changing it and is safe to repeat.
 */
import { mkdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { query } from '../adapters/mysql/connect';
import { withInstance } from '../adapters/mysql/instance';
import { dialectOf, probeTopology } from '../adapters/mysql/probe';
import { binlogHistory, type BinlogHistory } from '../adapters/mysql/binlogHistory';
import { tableShapes } from '../adapters/mysql/tableShapes';
import { readWriterEndpoint, withControl } from '../adapters/control/store';
import { binlogSources } from '../adapters/backup/binlogSources';
import { runTool, toolPath } from '../adapters/process/tools';
import { flashbackRefusal, oneLine, parseRowImages, rowImagesRefusal } from '../core/binlogEvents';
import { findErrant, purgedPast, type BinlogFileEvents, type BinlogTransaction } from '../core/failback';
import { parseMariaGtidList } from '../core/gtid';
import { incidentIdProblem } from '../core/inputs';
import type { InstanceRef } from '../core/types';
import type { ActivityDeps } from './deps';

const refuse = (message: string, type = 'PreconditionFailed') => ApplicationFailure.nonRetryable(message, type);

export interface FenceReturning {
  /** It was writable when found (restarted with read_only=0): made read-only now. */
  wasWritable: boolean;
  killedSessions: number;
  position: string;
  /** host:port it replicates from, if it does. */
  replicatingFrom: string | null;
}

/** One errant transaction, as the approval and the export show it. */
export interface ErrantTransaction extends BinlogTransaction {
  /** Epoch ms of its events. */
  timestamp: number;
  kind: 'ddl' | 'trans';
  tables: string[];
  statement: string;
  rows: number;
  /** Why flashback cannot undo it (absent: it can). */
  flashbackRefusal?: string;
}

export interface FailbackAnalysis {
  instance: string;
  primary: string;
  instancePosition: string;
  primaryPosition: string;
  /** The instance's history without the errant transactions (where a rejoin continues from). */
  commonPosition: string;
  exact: boolean;
  problems: string[];
  errant: ErrantTransaction[];
  /** Domains the primary purged past the instance's common position. */
  purged: { domain: number; primaryFrom: number; instanceAt: number }[];
  /** Binlog files of each server that were read. */
  filesRead: { instance: number; primary: number };
  /** Where the errant transactions were exported (absent when there are none). */
  export?: { dir: string; binlog: string; sql: string; json: string };
}

export function createFailbackActivities({ config }: ActivityDeps) {
  const sources = binlogSources(config, () => heartbeat());

  /**
   * The instance's files newest first, as far as needed: until, in every domain it wrote, a
   * transaction the primary holds is found (the primary's files are read newest first down to
   * the oldest sequence number asked about).
   */
  async function compareHistories(mine: BinlogHistory, theirs: BinlogHistory, instancePosition: string, primaryPosition: string, primaryFloor: string) {
    const read: BinlogFileEvents[] = [];
    const primaryGtids = new Set<string>();
    let primaryNext = theirs.files.length - 1;
    // Files are read newest first: the head state of the last one read is how far down it goes.
    let lastHead: Map<number, number> | undefined;
    const lowest = (domain: number) => (lastHead ? (lastHead.get(domain) ?? 0) : Infinity);
    const readPrimaryDownTo = async (domain: number, seq: number) => {
      // The primary's transaction `seq` of a domain is in the file whose head is below it.
      while (primaryNext >= 0 && lowest(domain) >= seq) {
        const f = await theirs.read(theirs.files[primaryNext--]!);
        for (const t of f.transactions) primaryGtids.add(t.gtid);
        lastHead = new Map(parseMariaGtidList(f.startState).map((g) => [g.domain, g.seq]));
      }
    };
    for (let i = mine.files.length - 1; i >= 0; i--) {
      const f = await mine.read(mine.files[i]!);
      read.unshift(f);
      const oldest = new Map<number, number>();
      for (const t of f.transactions) {
        const g = parseMariaGtidList(t.gtid)[0]!;
        oldest.set(g.domain, Math.min(oldest.get(g.domain) ?? Infinity, g.seq));
      }
      for (const [domain, seq] of oldest) await readPrimaryDownTo(domain, seq);
      const analysis = findErrant({ instanceFiles: read, primaryHas: (g) => primaryGtids.has(g), primaryPosition, primaryFloor, instancePosition });
      // Done when every domain the instance has written is traced back to a transaction both hold
      // (its newest files may hold nothing: a server starts a new binlog when it restarts).
      const resolved = (domain: number) => analysis.domains.some((d) => d.domain === domain && d.commonThrough !== null);
      if (parseMariaGtidList(instancePosition).every((g) => g.seq === 0 || resolved(g.domain))) return { analysis, filesRead: { instance: read.length, primary: theirs.files.length - 1 - primaryNext } };
    }
    const analysis = findErrant({ instanceFiles: read, primaryHas: (g) => primaryGtids.has(g), primaryPosition, primaryFloor, instancePosition });
    return { analysis, filesRead: { instance: read.length, primary: theirs.files.length - 1 - primaryNext } };
  }

  return {
    /**
     * Read-only first, whatever else: a returning old primary that restarted writable takes no
     * more writes. Refused for the instance the writer endpoint names (that is the primary).
     */
    async fenceReturningInstance(ref: InstanceRef): Promise<FenceReturning> {
      const endpoint = await withControl(config, (c) => readWriterEndpoint(c, ref.cluster)).catch(() => null);
      if (endpoint?.instance === ref.instance) throw refuse(`the writer endpoint of ${ref.cluster} names ${ref.instance}: it is the primary, not an instance to fail back`, 'IsPrimary');
      if (!endpoint) {
        // No record of the primary: a writable instance is the primary unless another one is writable too.
        const t = await probeTopology(config, ref.cluster);
        const me = t.instances.find((i) => i.instance === ref.instance);
        const others = t.instances.filter((i) => i.instance !== ref.instance && i.reachable && i.readOnly === false);
        if (me?.reachable && me.readOnly === false && !others.length) {
          throw refuse(`${ref.instance} is the only writable instance of ${ref.cluster} and no writer endpoint names another: it is the primary, not an instance to fail back`, 'IsPrimary');
        }
      }
      return withInstance(config, ref, async (conn) => {
        const { dialect } = await dialectOf(conn);
        const vars = async () => dialect.parseVariables((await query<Record<string, unknown>[]>(conn, dialect.variablesQuery()))[0]!);
        const before = await vars();
        let killed = 0;
        if (!before.readOnly) {
          await query(conn, 'SET SESSION lock_wait_timeout = 5');
          for (const sql of dialect.setReadOnly(true)) await query(conn, sql);
          // Sessions that were writing end now: read_only stops new writes, not open transactions.
          for (const s of await query<{ id: number | string }[]>(conn, dialect.clientSessionsQuery())) {
            try {
              await query(conn, dialect.killConnection(Number(s.id)));
              killed++;
            } catch (err) {
              if ((err as { errno?: number }).errno !== 1094) throw err;
            }
          }
        }
        const after = await vars();
        if (!after.readOnly) throw ApplicationFailure.retryable(`${ref.instance} is still writable after SET GLOBAL read_only`);
        const r = dialect.parseReplicaStatus(await query<Record<string, unknown>[]>(conn, dialect.replicaStatusQuery()));
        return { wasWritable: !before.readOnly, killedSessions: killed, position: after.gtid.binlogPos ?? after.gtid.currentPos ?? '', replicatingFrom: r ? `${r.sourceHost}:${r.sourcePort}` : null };
      });
    },

    /**
     * The errant analysis: the instance's binlog history against the primary's, the transactions
     * only the instance holds (decoded from its own binlog with mariadb-binlog), each one's
     * flashback check, whether the primary purged binlogs the instance needs; the errant
     * transactions exported to `<backupDir>/<cluster>/failback/<incident>/` (errant.binlog:
     * `mariadb-binlog` output that replays them; errant.sql: readable; errant.json).
     */
    async analyseFailback(input: InstanceRef & { primary: string; incidentId: string }): Promise<FailbackAnalysis> {
      const bad = incidentIdProblem('incidentId', input.incidentId, { required: true });
      if (bad) throw refuse(bad, 'InvalidInput');
      const primaryRef = { cluster: input.cluster, instance: input.primary };
      return withInstance(config, primaryRef, (pconn) =>
        withInstance(config, input, async (iconn) => {
          const { dialect } = await dialectOf(iconn);
          if (dialect.flavor !== 'mariadb') throw refuse('failback reads MariaDB GTID histories; this instance is not MariaDB', 'Unsupported');
          const vars = async (c: typeof iconn) => dialect.parseVariables((await query<Record<string, unknown>[]>(c, dialect.variablesQuery()))[0]!);
          const primaryPosition = (await vars(pconn)).gtid.binlogPos ?? '';
          const instancePosition = (await vars(iconn)).gtid.binlogPos ?? '';
          const theirs = await binlogHistory(pconn, () => heartbeat());
          const mine = await binlogHistory(iconn, () => heartbeat());
          const primaryFloor = await theirs.floor();
          const { analysis, filesRead } = await compareHistories(mine, theirs, instancePosition, primaryPosition, primaryFloor);
          const purged = purgedPast(analysis.commonPosition, primaryFloor);
          const errant = await describeErrant(input, analysis.errant);
          const result: FailbackAnalysis = {
            instance: input.instance, primary: input.primary, instancePosition, primaryPosition, commonPosition: analysis.commonPosition,
            exact: analysis.exact, problems: analysis.problems, errant, purged, filesRead,
          };
          if (errant.length) result.export = await exportErrant(input, result);
          return result;
        }),
      );
    },

    /**
     * The switch back's compare-and-swap: the cluster's primary (as probed, and as the writer
     * endpoint names it) must still be the one the run started with; a concurrent failover
     * changed it and the switch back is refused.
     */
    async checkPrimaryUnchanged(input: { cluster: string; expected: string }): Promise<{ primary: string; endpointGeneration: number | null }> {
      const topology = await probeTopology(config, input.cluster);
      const endpoint = await withControl(config, (c) => readWriterEndpoint(c, input.cluster)).catch(() => null);
      if (topology.primary !== input.expected || (endpoint && endpoint.instance !== input.expected)) {
        throw refuse(
          `the primary of ${input.cluster} is no longer ${input.expected} (probed: ${topology.primary ?? 'none'}; writer endpoint: ${endpoint?.instance ?? 'none'}): a concurrent failover; nothing more is changed, start a new failback`,
          'PrimaryChanged',
        );
      }
      return { primary: input.expected, endpointGeneration: endpoint ? Number(endpoint.generation) : null };
    },
  };

  async function describeErrant(ref: InstanceRef, txs: BinlogTransaction[]): Promise<ErrantTransaction[]> {
    const { host, port, admin } = sources.loginOf(ref.cluster, ref.instance);
    const out: ErrantTransaction[] = [];
    for (const t of txs) {
      heartbeat();
      const run = await runTool(
        toolPath('mariadb-binlog'),
        ['--read-from-remote-server', `--host=${host}`, `--port=${port}`, '--base64-output=DECODE-ROWS', '-vv', `--start-position=${t.startPosition}`, `--stop-position=${t.endPosition}`, t.file],
        { credentials: admin, env: { TZ: 'UTC' }, timeoutMs: 10 * 60_000 },
      );
      const g = parseRowImages(run.stdout, t.file).find((x) => x.gtid === t.gtid);
      if (!g) throw ApplicationFailure.retryable(`${t.gtid} not found at ${t.file}:${t.startPosition} on ${ref.instance}`);
      const shapes = await tableShapes(config, ref.cluster, ref.instance, g.tables.filter((x) => x.includes('.')));
      const refusal = flashbackRefusal(g) ?? rowImagesRefusal(g, shapes);
      out.push({
        ...t, timestamp: g.timestamp, kind: g.kind, tables: g.tables, statement: oneLine(g.statements[0] ?? g.kind, 300),
        rows: g.rowEvents.reduce((n, e) => n + e.rows, 0), ...(refusal ? { flashbackRefusal: refusal } : {}),
      });
    }
    return out;
  }

  /** Written again whole on a retry: the files always hold exactly the analysis returned. */
  async function exportErrant(ref: InstanceRef & { incidentId: string }, a: FailbackAnalysis): Promise<NonNullable<FailbackAnalysis['export']>> {
    const dir = join(config.backupDir, ref.cluster, 'failback', ref.incidentId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const files = { dir, binlog: join(dir, 'errant.binlog'), sql: join(dir, 'errant.sql'), json: join(dir, 'errant.json') };
    const { host, port, admin } = sources.loginOf(ref.cluster, ref.instance);
    const decode = async (t: BinlogTransaction, extra: string[]) =>
      (await runTool(toolPath('mariadb-binlog'), ['--read-from-remote-server', `--host=${host}`, `--port=${port}`, ...extra, `--start-position=${t.startPosition}`, `--stop-position=${t.endPosition}`, t.file], {
        credentials: admin, env: { TZ: 'UTC' }, timeoutMs: 10 * 60_000,
      })).stdout;
    for (const f of [files.binlog, files.sql]) await rm(f, { force: true });
    const head = `-- errant transactions of ${ref.instance} (${ref.cluster}) that ${a.primary} never received; failback ${ref.incidentId}\n-- ${ref.instance} at ${a.instancePosition}; ${a.primary} at ${a.primaryPosition}; common history through ${a.commonPosition || '(none)'}\n`;
    await writeFile(files.binlog, `${head}-- mariadb-binlog output: replays them with \`mariadb --binary-mode < errant.binlog\` (review first)\n`, { mode: 0o600 });
    await writeFile(files.sql, `${head}-- readable: row images decoded (mariadb-binlog --base64-output=DECODE-ROWS -vv)\n`, { mode: 0o600 });
    for (const t of a.errant) {
      heartbeat();
      const label = `\n-- ${t.gtid} at ${t.file}:${t.startPosition}-${t.endPosition}, ${new Date(t.timestamp).toISOString()}, ${t.kind}, tables ${t.tables.join(', ') || '(none)'}: ${t.statement}\n`;
      await appendFile(files.binlog, label + (await decode(t, [])));
      await appendFile(files.sql, label + (await decode(t, ['--base64-output=DECODE-ROWS', '-vv'])));
    }
    await writeFile(files.json, JSON.stringify({ ...a, export: undefined }, null, 2), { mode: 0o600 });
    return files;
  }
}
