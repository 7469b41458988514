/**
 * Activities of the failback runbook: fence the returning old primary (read-only before anything
 * else, even if it restarted writable; never the instance the writer endpoint names), compare its
 * binlog history with the current primary's and export what only it holds, check that the
 * primary has not changed (the switch back's compare-and-swap), and take a reseeded member off
 * the backup lineage's stale list. Each checks state before changing it and is safe to repeat.
 */
import { mkdir, mkdtemp, readFile, rename, rm, writeFile, appendFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { query } from '../adapters/mysql/connect';
import { withInstance } from '../adapters/mysql/instance';
import { dialectOf, probeTopology } from '../adapters/mysql/probe';
import { binlogHistory, type BinlogHistory } from '../adapters/mysql/binlogHistory';
import { tableShapes } from '../adapters/mysql/tableShapes';
import { readWriterEndpoint, withControl } from '../adapters/control/store';
import { binlogSources } from '../adapters/backup/binlogSources';
import { logicalBackup, parseXtrabackupBinlogInfo, runPipe, runTool, toolPath, writeJsonAtomically } from '../adapters/process/tools';
import { loadDump } from '../adapters/backup/dumpLoad';
import { quoteIdent } from '../core/rowDigest';
import { getCluster, resolveCredential } from '../config/load';
import { flashbackRefusal, isFlashbackOf, oneLine, parseRowImages, rowImagesRefusal, type RowImageGroup } from '../core/binlogEvents';
import { findErrant, purgedPast, type BinlogFileEvents, type BinlogTransaction } from '../core/failback';
import { parseMariaGtidList } from '../core/gtid';
import { gtidProblem, incidentIdProblem } from '../core/inputs';
import { withSession } from '../adapters/mysql/switchover';
import { replicationOn } from '../adapters/mysql/replication';
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

export interface UndoErrantResult {
  /** Errant transactions undone by this attempt, and by an earlier one (newest first). */
  undone: { gtid: string; by: string }[];
  alreadyUndone: string[];
  /** The binary log was started afresh at this file: the errant transactions and their undo are not in it. */
  binlogFrom: string;
  /** gtid_slave_pos now: the common history, where the rejoin continues. */
  slavePos: string;
  /** An earlier attempt had done it all (the binlog no longer holds the errant transactions). */
  alreadyDone: boolean;
}

export interface ReseedResult {
  /** Where the data came from: a healthy replica of the primary, else the primary. */
  source: string;
  /** The source's GTID position at the dump's snapshot: gtid_slave_pos now, where replication continues. */
  gtid: string;
  dumpBytes: number;
  dumpMs: number;
  loadMs: number;
  binlogFrom: string;
  /** An earlier attempt had finished it (its marker and the instance's position agree). */
  alreadyDone: boolean;
  /** The dump of an earlier attempt was used again. */
  dumpReused: boolean;
}

/** What a reseed in progress leaves, so that any later attempt or run sees a half-loaded instance. */
export interface ReseedingMarker {
  instance: string;
  workflowId: string;
  incidentId: string;
  method: 'reseed-logical' | 'reseed-physical';
  startedAt: string;
  /** reseed-physical: the target's datadir (the instance may be down when the marker is read). */
  datadir?: string;
}

export interface PhysicalReseedResult {
  source: string;
  /** The GTID of the copy's `xtrabackup_binlog_info`: gtid_slave_pos now, where replication continues. */
  gtid: string;
  copyBytes: number;
  copyMs: number;
  /** From the copy to the position set (binlog afresh, gtid_slave_pos). */
  finishMs: number;
  binlogFrom: string;
  /** An earlier attempt had finished it all (no marker; the instance at the recorded position). */
  alreadyDone: boolean;
  /** An earlier attempt's copy had arrived whole: not copied again. */
  copyReused: boolean;
}

const LOAD_SESSIONS = Math.min(4, Math.max(2, availableParallelism()));
const SYSTEM_SCHEMAS = ['mysql', 'information_schema', 'performance_schema', 'sys'];

/** At most this many errant transactions are undone one by one; more is a reseed's work. */
export const MAX_UNDO_TRANSACTIONS = 10_000;

export function createFailbackActivities({ config }: ActivityDeps) {
  const sources = binlogSources(config, () => heartbeat());
  /** `<backupDir>/<cluster>/failback/reseeding-<instance>.json`: present while a reseed has wiped or loaded part of it. */
  const reseedingFile = (cluster: string, instance: string) => join(config.backupDir, cluster, 'failback', `reseeding-${instance}.json`);
  const reseeding = async (cluster: string, instance: string): Promise<ReseedingMarker | null> =>
    JSON.parse(await readFile(reseedingFile(cluster, instance), 'utf8').catch(() => 'null')) as ReseedingMarker | null;

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
          // A reseed that wiped it and did not finish: its binlog says nothing of what it holds now.
          const half = await reseeding(input.cluster, input.instance);
          if (half) {
            result.exact = false;
            result.problems = [...result.problems, `a ${half.method} of ${input.instance} started ${half.startedAt} by ${half.workflowId} did not finish: it may be half-loaded, only a reseed brings it back`];
          }
          if (errant.length) result.export = await exportErrant(input, result);
          return result;
        }),
      );
    },

    /**
     * Flashback of the errant transactions on the returning instance, then a binary log that no
     * longer holds them, so that it can rejoin and never diverge from the primary:
     *
     * - each errant transaction, newest first, is undone by its exact inverse (the one generator:
     *   `mariadb-binlog --flashback` over the instance's own binlog), applied as the admin (which
     *   passes read_only; the instance stays read-only). The undo is LOGGED: the instance's binlog
     *   is then the record of what was done, so a retry finds each undo (isFlashbackOf) instead of
     *   applying it twice, and a crash can only leave a newest-first prefix undone;
     * - then the binlog is started afresh (`RESET MASTER TO <next number>`: file names keep
     *   growing for the binlog archive) and gtid_slave_pos is set to the common history. The
     *   errant GTIDs and the undo's own GTIDs (`<domain>-<its server_id>-<seq>`) leave its GTID
     *   state: otherwise, under gtid_strict_mode, the primary's transactions with lower sequence
     *   numbers could not be logged after them, and the primary would refuse a slave position it
     *   never had. The errant transactions stay exported with the incident (errant.binlog/.sql).
     *
     * Refused when the instance's binlog holds transactions after the first errant one that are
     * neither errant nor an undo (it was written to after the analysis: run the failback again).
     * A retry that finds no errant transaction in its binlog any more (an earlier attempt reset
     * it) only makes sure gtid_slave_pos is the common history.
     */
    async undoErrantTransactions(input: InstanceRef & { errant: Pick<BinlogTransaction, 'gtid' | 'file' | 'startPosition' | 'endPosition'>[]; commonPosition: string }): Promise<UndoErrantResult> {
      if (!Array.isArray(input.errant) || !input.errant.length || input.errant.length > MAX_UNDO_TRANSACTIONS) {
        throw refuse(`errant must list 1 to ${MAX_UNDO_TRANSACTIONS} transactions, got ${Array.isArray(input.errant) ? input.errant.length : typeof input.errant}`, 'InvalidInput');
      }
      for (const t of input.errant) {
        const bad = gtidProblem('errant gtid', t.gtid) ?? (!/^[\w.-]{1,255}$/.test(String(t.file)) || !Number.isSafeInteger(t.startPosition) || !Number.isSafeInteger(t.endPosition) ? `errant ${t.gtid}: bad file or positions` : undefined);
        if (bad) throw refuse(bad, 'InvalidInput');
      }
      const common = parseMariaGtidList(input.commonPosition);
      const endpoint = await withControl(config, (c) => readWriterEndpoint(c, input.cluster)).catch(() => null);
      if (endpoint?.instance === input.instance) throw refuse(`the writer endpoint of ${input.cluster} names ${input.instance}: it is the primary, nothing of it is undone`, 'IsPrimary');

      return withSession(config, input, async (s) => {
        const v = await s.vars();
        if (!v.readOnly) throw refuse(`${input.instance} is writable: it must stay fenced (read-only) while its errant transactions are undone`, 'NotFenced');
        const setSlavePos = async () => {
          const now = (await s.vars()).gtid.slavePos ?? '';
          if (sameGtids(now, input.commonPosition)) return;
          const set = s.dialect.setGtidSlavePos(input.commonPosition);
          await s.exec(set.sql, set.params);
        };
        const history = await binlogHistory(s.conn, () => heartbeat());
        const present: boolean[] = [];
        for (const t of input.errant) present.push(history.files.includes(t.file) && (await history.read(t.file)).transactions.some((x) => x.gtid === t.gtid && x.startPosition === t.startPosition));
        if (present.every((p) => !p)) {
          // An earlier attempt undid them and started the binlog afresh.
          if (await s.replica()) await s.exec(s.dialect.stopReplica());
          await setSlavePos();
          return { undone: [], alreadyUndone: input.errant.map((t) => t.gtid).reverse(), binlogFrom: history.files[0] ?? '', slavePos: input.commonPosition, alreadyDone: true };
        }
        if (!present.every((p) => p)) {
          throw refuse(`some errant transactions of ${input.instance} are no longer in its binlog (${input.errant.filter((_, i) => !present[i]).map((t) => t.gtid).slice(0, 5).join(', ')}), others are: its binlog changed since the analysis; run the failback again`, 'ErrantChanged');
        }
        if (await s.replica()) await s.exec(s.dialect.stopReplica());

        const first = input.errant[0]!;
        const readSince = async () => (await sources.readServerBinlog(input.cluster, input.instance, { file: first.file, position: first.startPosition }, 'last', { beat: () => heartbeat() })).kept;
        /** Each errant transaction's undo in the binlog (or undefined), and what else is there. */
        const match = (groups: RowImageGroup[]) => {
          const errantAt = new Map(input.errant.map((t) => [t.gtid, groups.findIndex((g) => g.gtid === t.gtid)]));
          const claimed = new Set<number>();
          const undoOf = new Map<string, string>();
          for (const t of [...input.errant].reverse()) {
            const i = errantAt.get(t.gtid)!;
            if (i < 0) throw refuse(`${t.gtid} is not in ${input.instance}'s binlog from ${first.file}:${first.startPosition}: run the failback again`, 'ErrantChanged');
            const j = groups.findIndex((g, k) => k > i && !claimed.has(k) && isFlashbackOf(g, groups[i]!));
            if (j >= 0) {
              claimed.add(j);
              undoOf.set(t.gtid, groups[j]!.gtid);
            }
          }
          const known = new Set([...errantAt.values(), ...claimed]);
          const other = groups.filter((_, k) => !known.has(k));
          return { errantAt, undoOf, other };
        };
        const before = await readSince();
        const found = match(before);
        if (found.other.length) {
          throw refuse(`${input.instance}'s binlog holds ${found.other.length} transaction(s) after ${first.gtid} that the analysis did not list (${found.other.slice(0, 3).map((g) => g.gtid).join(', ')}): it was written to since; run the failback again`, 'ErrantChanged');
        }
        const alreadyUndone = [...input.errant].reverse().filter((t) => found.undoOf.has(t.gtid)).map((t) => t.gtid);
        const undone: { gtid: string; by: string }[] = [];
        const { host, port, admin } = sources.loginOf(input.cluster, input.instance);
        const dir = await mkdtemp(join(tmpdir(), 'runbook-undo-'));
        try {
          for (const t of [...input.errant].reverse()) {
            if (found.undoOf.has(t.gtid)) continue;
            const group = before[found.errantAt.get(t.gtid)!]!;
            const shapes = await tableShapes(config, input.cluster, input.instance, group.tables.filter((x) => x.includes('.')));
            const refusal = flashbackRefusal(group) ?? rowImagesRefusal(group, shapes);
            if (refusal) throw refuse(`${t.gtid} cannot be undone: ${refusal}; a reseed is needed`, 'FlashbackRefused');
            const file = join(dir, `${t.gtid}.sql`);
            await sources.writeFlashback({ server: input }, t, file, () => heartbeat());
            // One transaction (the tool wraps it): on an error the client exits and it rolls back.
            await runTool(toolPath('mariadb'), ['--binary-mode', `--host=${host}`, `--port=${port}`], { credentials: admin, stdinFile: file, onProgress: () => heartbeat(), timeoutMs: 60 * 60_000 }).catch((err: unknown) => {
              throw ApplicationFailure.retryable(`undoing ${t.gtid} on ${input.instance} failed: ${(err as Error).message.split('\n')[0]}`);
            });
          }
          // The binlog says what happened: every errant transaction has its exact inverse after it.
          const after = match(await readSince());
          const missing = input.errant.filter((t) => !after.undoOf.has(t.gtid));
          if (missing.length || after.other.length) {
            throw refuse(`after undoing, ${input.instance}'s binlog does not show each errant transaction reversed (missing ${missing.map((t) => t.gtid).slice(0, 5).join(', ') || 'none'}; other writes ${after.other.map((g) => g.gtid).slice(0, 5).join(', ') || 'none'}): check it by hand`, 'UndoNotFound');
          }
          for (const t of [...input.errant].reverse()) if (!found.undoOf.has(t.gtid)) undone.push({ gtid: t.gtid, by: after.undoOf.get(t.gtid)! });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
        // Start the binlog afresh past every file name it had, then continue from the common history.
        const binlogFrom = await (await replicationOn(s.conn)).resetBinlogsPastCurrent();
        await setSlavePos();
        if (!common.length) log.warn('common position is empty: the instance rejoins from the primary\'s first transaction');
        return { undone, alreadyUndone, binlogFrom, slavePos: input.commonPosition, alreadyDone: false };
      });
    },

    /**
     * Reseed over SQL (works for any remote host): a consistent dump of a healthy replica of the
     * primary (else the primary) with its GTID position (`mariadb-dump --single-transaction
     * --master-data=2 --gtid`, the backup's own dump), the instance wiped (every non-system
     * schema dropped) and loaded unlogged, its binlog started afresh and gtid_slave_pos set to the
     * dump's position; the rejoin then replicates from the primary from there.
     *
     * Restartable at any point: the dump is written under a temporary name and kept once whole
     * (a retry loads it again); before the wipe a marker (`failback/reseeding-<instance>.json`,
     * see analyseFailback) says the instance may be half-loaded, and only a finished load removes
     * it, so a worker killed mid-load leaves an instance that every later attempt or run reseeds
     * again, never rejoins. All the while the instance stays read-only, replicating from nobody,
     * out of the writer endpoint (refused if the endpoint names it).
     */
    async reseedLogical(input: InstanceRef & { primary: string; incidentId: string; workflowId: string }): Promise<ReseedResult> {
      await checkReseedTarget(input);
      const dir = join(config.backupDir, input.cluster, 'failback', input.incidentId, 'reseed');
      const dumpFile = join(dir, 'dump.sql');
      const dumpInfo = join(dir, 'dump.json');
      const loaded = join(dir, 'loaded.json');
      const admin = resolveCredential(getCluster(config, input.cluster).credentials.admin);
      return withReseedProgress(reseed);
      async function reseed(beat: (phase: string, bytes?: number) => void, subSteps: { name: string }[]): Promise<ReseedResult> {

      // Fenced: read-only, and no longer replicating from anyone (it is about to be rebuilt).
      const state = await withSession(config, input, async (s) => {
        const v = await s.vars();
        if (!v.readOnly) throw refuse(`${input.instance} is writable: it must stay fenced (read-only) while it is reseeded`, 'NotFenced');
        const r = await s.replica();
        const done = JSON.parse(await readFile(loaded, 'utf8').catch(() => 'null')) as (ReseedResult & { workflowId: string }) | null;
        return { slavePos: v.gtid.slavePos ?? '', replicating: !!r, done };
      });
      if (state.done && !(await reseeding(input.cluster, input.instance)) && sameGtids(state.slavePos, state.done.gtid)) {
        return { ...state.done, alreadyDone: true };
      }
      if (state.replicating) await withSession(config, input, async (s) => (await replicationOn(s.conn)).forgetSource());

      // 1. The dump (kept once whole: a retry loads the same one).
      await mkdir(dir, { recursive: true, mode: 0o700 });
      let dump = existsSync(dumpFile) ? (JSON.parse(await readFile(dumpInfo, 'utf8').catch(() => 'null')) as { source: string; gtid: string; sizeBytes: number; durationMs: number } | null) : null;
      const dumpReused = !!dump;
      if (!dump) {
        const source = await healthyReplica(input.cluster, input.primary, input.instance);
        const partial = `${dumpFile}.partial`;
        await rm(partial, { force: true });
        const { host, port } = sources.loginOf(input.cluster, source);
        const d = await logicalBackup({ host, port, ...admin, outFile: partial, onProgress: (bytes) => beat('dump', bytes), timeoutMs: 6 * 3600_000 });
        if (!d.gtid) throw refuse(`the dump of ${source} has no GTID position (its binary log is empty): nothing to continue replication from`, 'DumpWithoutPosition');
        await rename(partial, dumpFile);
        dump = { source, gtid: d.gtid, sizeBytes: d.sizeBytes, durationMs: d.durationMs };
        await writeJsonAtomically(dumpInfo, dump);
      }
      subSteps.push({ name: 'dump' });
      beat('dump');

      // 2. Marked before anything is dropped; then wiped, unlogged.
      const marker: ReseedingMarker = { instance: input.instance, workflowId: input.workflowId, incidentId: input.incidentId, method: 'reseed-logical', startedAt: new Date().toISOString() };
      if (!(await reseeding(input.cluster, input.instance))) await writeJsonAtomically(reseedingFile(input.cluster, input.instance), marker);
      await rm(loaded, { force: true });
      const started = Date.now();
      await withInstance(config, input, async (conn) => {
        await query(conn, 'SET SESSION sql_log_bin = 0');
        for (const { Database: db } of await query<{ Database: string }[]>(conn, 'SHOW DATABASES')) {
          if (!SYSTEM_SCHEMAS.includes(db)) await query(conn, `DROP DATABASE ${quoteIdent(db)}`, [], 10 * 60_000);
        }
      });
      subSteps.push({ name: 'wipe' });
      beat('wipe');

      // 3. Loaded unlogged (the rows come with the dump's position, not as new transactions).
      const { host, port } = sources.loginOf(input.cluster, input.instance);
      await loadDump({
        file: dumpFile,
        sessions: LOAD_SESSIONS,
        client: { args: [`--host=${host}`, `--port=${port}`, '--protocol=TCP'], credentials: admin },
        initCommand: 'SET SESSION sql_log_bin = 0',
        onProgress: (bytes) => beat('load', bytes),
        timeoutMs: 6 * 3600_000,
      });
      subSteps.push({ name: 'load' });
      beat('load');

      // 4. Its own history goes; it continues from the dump's position.
      const binlogFrom = await withSession(config, input, async (s) => {
        const r = await replicationOn(s.conn);
        await r.forgetSource();
        const first = await r.resetBinlogsPastCurrent();
        await r.setAppliedPosition(dump!.gtid);
        return first;
      });
      const result: ReseedResult = { source: dump.source, gtid: dump.gtid, dumpBytes: dump.sizeBytes, dumpMs: dumpReused ? 0 : dump.durationMs, loadMs: Date.now() - started, binlogFrom, alreadyDone: false, dumpReused };
      await writeJsonAtomically(loaded, { ...result, workflowId: input.workflowId });
      await rm(reseedingFile(input.cluster, input.instance), { force: true });
      await rm(dumpFile, { force: true });
      return result;
      }
    },

    /**
     * Reseed by a physical copy: `reseed.physical.sourceCommand` (a `mariadb-backup --backup
     * --stream=mbstream` where the source's datadir is) piped into `targetCommand` (where the
     * target's datadir is: stop, clear, `mbstream -x`, prepare, start read-only; it prints
     * `cleared` once the datadir is gone and `xtrabackup_binlog_info` as its last line). Then, as
     * reseed-logical: the source's replication settings forgotten, the binlog started afresh past
     * its old file names, gtid_slave_pos set to the copy's GTID; the rejoin replicates from there.
     *
     * The same marker as reseed-logical (written before the target command runs, removed only once
     * the position is set): a member whose copy was cut anywhere is reseeded again by any later
     * attempt or run. A copy that arrived whole is recorded (`copied.json`) before the finishing
     * steps, so an attempt that finds it and the instance running does not copy again; one that
     * finds no record starts over (the target command clears the datadir first).
     */
    async reseedPhysical(input: InstanceRef & { primary: string; incidentId: string; workflowId: string }): Promise<PhysicalReseedResult> {
      const configured = getCluster(config, input.cluster).reseed?.physical;
      if (!configured) throw refuse(`${input.cluster} has no reseed.physical template in its config: reseed-physical cannot copy (use reseed-logical)`, 'NoTemplate');
      const template = configured;
      await checkReseedTarget(input);
      const dir = join(config.backupDir, input.cluster, 'failback', input.incidentId, 'reseed-physical');
      const copiedFile = join(dir, 'copied.json');
      const doneFile = join(dir, 'restored.json');
      return withReseedProgress(reseed);
      async function reseed(beat: (phase: string, bytes?: number) => void, subSteps: { name: string }[]): Promise<PhysicalReseedResult> {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const marker = await reseeding(input.cluster, input.instance);
        // The instance as it is: down is possible only once a copy has begun (marked).
        const state = await withSession(config, input, async (s) => {
          const v = await s.vars();
          const [row] = await query<{ d: string }[]>(s.conn, 'SELECT @@datadir AS d');
          return { readOnly: v.readOnly, slavePos: v.gtid.slavePos ?? '', replicating: !!(await s.replica()), datadir: String(row!.d).replace(/\/$/, '') };
        }).catch((err: unknown) => {
          if (!marker) throw ApplicationFailure.retryable(`${input.instance} is unreachable (${(err as Error).message}) and no reseed of it is under way: start it first`);
          return null;
        });
        if (state && !state.readOnly) throw refuse(`${input.instance} is writable: it must stay fenced (read-only) while it is reseeded`, 'NotFenced');
        const done = JSON.parse(await readFile(doneFile, 'utf8').catch(() => 'null')) as PhysicalReseedResult | null;
        if (done && !marker && state && sameGtids(state.slavePos, done.gtid)) return { ...done, alreadyDone: true };
        const datadir = state?.datadir ?? marker?.datadir;
        if (!datadir) throw refuse(`${input.instance} is unreachable and the reseeding marker does not name its datadir: start it, then run the failback again`, 'Unreachable');

        // 1. The copy, unless an earlier attempt's arrived whole and the instance runs on it.
        let copy = JSON.parse(await readFile(copiedFile, 'utf8').catch(() => 'null')) as { source: string; gtid: string; bytes: number; durationMs: number } | null;
        const copyReused = !!(copy && marker && state);
        if (!copyReused) {
          if (state?.replicating) await withSession(config, input, async (s) => (await replicationOn(s.conn)).forgetSource());
          const source = await healthyReplica(input.cluster, input.primary, input.instance);
          const src = sources.loginOf(input.cluster, source);
          const sourceDatadir = await withInstance(config, { cluster: input.cluster, instance: source }, async (conn) => String((await query<{ d: string }[]>(conn, 'SELECT @@datadir AS d'))[0]!.d).replace(/\/$/, ''));
          const me = sources.loginOf(input.cluster, input.instance);
          const fill = templateFiller({
            cluster: input.cluster, sourceInstance: source, sourceHost: src.host, sourcePort: String(src.port), sourceDatadir,
            targetInstance: input.instance, targetHost: me.host, targetPort: String(me.port), targetDatadir: datadir, engineDir: engineDir(),
          });
          await rm(copiedFile, { force: true });
          const m: ReseedingMarker = { instance: input.instance, workflowId: input.workflowId, incidentId: input.incidentId, method: 'reseed-physical', startedAt: new Date().toISOString(), datadir };
          if (!marker || marker.datadir !== datadir) await writeJsonAtomically(reseedingFile(input.cluster, input.instance), { ...(marker ?? m), datadir });
          const [pCmd, ...pArgs] = template.sourceCommand.map(fill);
          const [cCmd, ...cArgs] = template.targetCommand.map(fill);
          beat('copy', 0);
          const run = await runPipe({ cmd: pCmd!, args: pArgs, group: true }, { cmd: cCmd!, args: cArgs, group: true }, {
            timeoutMs: template.timeoutMinutes * 60_000,
            onProgress: (bytes) => beat('copy', bytes),
            onConsumerLine: (line) => {
              if (line.trim() !== 'cleared' || subSteps.some((x) => x.name === 'cleared')) return;
              subSteps.push({ name: 'cleared' });
              beat('copy');
            },
          }).catch((err: unknown) => {
            throw ApplicationFailure.retryable(`copying ${source} into ${input.instance} failed: ${(err as Error).message}`);
          });
          const last = run.consumerStdout.trim().split('\n').pop() ?? '';
          const info = parseXtrabackupBinlogInfo(last);
          if (!info?.gtid || gtidProblem('xtrabackup_binlog_info', info.gtid)) {
            throw refuse(`the target command's last line is not xtrabackup_binlog_info with a GTID (${JSON.stringify(last.slice(0, 200))}): the copy of ${source} has no position to continue from; ${input.instance} stays marked for reseeding`, 'CopyWithoutPosition');
          }
          copy = { source, gtid: info.gtid, bytes: run.bytes, durationMs: run.durationMs };
          await writeJsonAtomically(copiedFile, copy);
        }
        subSteps.push({ name: 'copy' });
        beat('copy');

        // 2. As a member reseeded over SQL: its own history goes; it continues from the copy's position.
        const started = Date.now();
        const binlogFrom = await withSession(config, input, async (s) => {
          if (!(await s.vars()).readOnly) throw refuse(`${input.instance} started writable after the copy: the target command must start it read-only`, 'NotFenced');
          const r = await replicationOn(s.conn);
          await r.forgetSource();
          const first = await r.resetBinlogsPastCurrent();
          await r.setAppliedPosition(copy!.gtid);
          return first;
        });
        const result: PhysicalReseedResult = { source: copy!.source, gtid: copy!.gtid, copyBytes: copy!.bytes, copyMs: copyReused ? 0 : copy!.durationMs, finishMs: Date.now() - started, binlogFrom, alreadyDone: false, copyReused };
        await writeJsonAtomically(doneFile, result);
        await rm(reseedingFile(input.cluster, input.instance), { force: true });
        await rm(copiedFile, { force: true });
        return result;
      }
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

  /** Refused before anything: a bad incident id, the primary itself, the instance the writer endpoint names. */
  async function checkReseedTarget(input: InstanceRef & { primary: string; incidentId: string }): Promise<void> {
    const bad = incidentIdProblem('incidentId', input.incidentId, { required: true });
    if (bad) throw refuse(bad, 'InvalidInput');
    if (input.primary === input.instance) throw refuse(`${input.instance} is the primary: it is never reseeded`, 'IsPrimary');
    const endpoint = await withControl(config, (c) => readWriterEndpoint(c, input.cluster)).catch(() => null);
    if (endpoint?.instance === input.instance) throw refuse(`the writer endpoint of ${input.cluster} names ${input.instance}: it is the primary, refusing to wipe it`, 'IsPrimary');
  }

  /**
   * A reseed's progress as heartbeat details (phase, bytes, the sub-steps done), and a beat every
   * 5 s meanwhile: a DROP DATABASE, a dump's snapshot or a copy's prepare may be silent a while.
   */
  async function withReseedProgress<T>(fn: (beat: (phase: string, bytes?: number) => void, subSteps: { name: string }[]) => Promise<T>): Promise<T> {
    const subSteps: { name: string }[] = [];
    let now = { phase: 'check', bytes: 0 };
    const beat = (phase: string, bytes = 0) => {
      now = { phase, bytes };
      heartbeat({ ...now, subSteps });
    };
    const ticker = setInterval(() => heartbeat({ ...now, subSteps }), 5000);
    try {
      return await fn(beat, subSteps);
    } finally {
      clearInterval(ticker);
    }
  }

  /**
   * A replica of the primary that replicates with both threads running (not `except`), else the
   * primary. Its binlog must hold its whole position (gtid_binlog_pos = gtid_current_pos): the
   * dump records gtid_binlog_pos, and a replica whose binlog was started afresh (say, reseeded a
   * moment ago) has an empty or partial one there.
   */
  async function healthyReplica(cluster: string, primary: string, except: string): Promise<string> {
    const t = await probeTopology(config, cluster);
    if (t.primary !== primary) throw refuse(`the primary of ${cluster} is ${t.primary ?? 'none'}, not ${primary}: a concurrent failover; start a new failback`, 'PrimaryChanged');
    const healthy = t.instances.find(
      (i) =>
        i.instance !== except && i.instance !== primary && i.reachable && i.readOnly && i.replication?.sourceInstance === primary && i.replication.sqlRunning === 'Yes' && i.replication.ioRunning === 'Yes' &&
        !!i.gtid?.binlogPos && sameGtids(i.gtid.binlogPos, i.gtid.currentPos ?? ''),
    );
    return healthy?.instance ?? primary;
  }

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

/** A template word with its `{placeholders}` filled (the schema allows only known ones). */
function templateFiller(values: Record<string, string>): (word: string) => string {
  return (word) => word.replace(/\{([A-Za-z]+)\}/g, (all, key: string) => values[key] ?? all);
}

/** The engine's own directory (where package.json is): the sandbox's template runs its scripts from there. */
function engineDir(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return process.cwd();
  }
}

/** Two GTID lists name the same position (order and spacing aside). */
function sameGtids(a: string, b: string): boolean {
  const norm = (x: string) => parseMariaGtidList(x).map((g) => `${g.domain}-${g.server}-${g.seq}`).sort().join(',');
  return norm(a) === norm(b);
}
