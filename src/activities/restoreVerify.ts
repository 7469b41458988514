/**
 * Verifying a recovery against production, and cutting the repair over, without ever claiming
 * what was not shown.
 *
 * Verify. Production never stands still, so the recovery instance is compared with production at
 * ONE position: a consistent snapshot is opened on the primary (`START TRANSACTION WITH
 * CONSISTENT SNAPSHOT`; its binlog position, and so its GTID position, is exact: the way
 * `mariadb-dump --single-transaction --gtid` finds its own), and the recovery instance catches up
 * from the live primary to exactly that position (it receives every write production took after
 * the archive ends). Then every compared table is checksummed in the snapshot and on the recovery
 * instance, chunk by chunk (checksum.ts), and each differing chunk is confirmed row by row. For a
 * skipped DML event the rows that may differ are exactly the rows the event changed (named by key
 * from its row images): a differing row outside them is a failed verification; one of them that
 * does NOT differ was changed again after the archive (its later full row image carries the bad
 * values back) and is left for a decision, never overwritten. The repair plan (each row to write
 * back, with production's digest in the snapshot and the recovered row's) is kept in the
 * restore's directory for the cut-over. No replica is paused and nothing in production is written.
 *
 * Cut over. A skipped DML event is repaired in place on the current primary, only its rows, in
 * transactions that lock each row and write it back only while it still equals what the snapshot
 * showed (a compare-and-set by row digest); a row changed since is reported and left as it is.
 * Every newer write survives. A whole-table swap remains only for DDL (a dropped table cannot have
 * newer writes), and is refused when production has the table again with rows in it. Both are
 * safe to run again: a row or table already in place is recognised.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getClient, heartbeat, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance, resolveCredential } from '../config/load';
import { eventRowKeys, type EventTableRows, type KeyedTableShape, type KeyValue } from '../core/eventRows';
import { readTransactionImages } from '../adapters/backup/binlogFile';
import { appliedOn, archiveDirFor, queryOn, reachedAll, recoveryServers, restoreDirOf, type RecoveryRef, type RecoveryServer, type ReplayMethod } from '../adapters/backup/recoveryServer';
import { dirSize, runTool, toolPath, writeJsonAtomically } from '../adapters/process/tools';
import { checksumTable, describeTable, diffChunkRows, primaryKeyBoundaries, rowDigests, writableColumns } from '../adapters/mysql/checksum';
import { describeRange, diffChecksums, keysWhere, keyText, qualifiedName, quoteIdent, parseTableName, showTuple, type ChunkDiff, type TableChecksum, type TableShape } from '../core/rowDigest';
import { query, type Conn } from '../adapters/mysql/connect';
import { dialectOf } from '../adapters/mysql/probe';
import { replicationOn } from '../adapters/mysql/replication';
import { parseMariaGtidList } from '../core/gtid';
import type { ActivityDeps } from './deps';
import { withInstance } from '../adapters/mysql/instance';

/** The bad event as the verification needs it (a located target's event). */
export interface EventRef {
  gtid: string;
  kind: 'ddl' | 'trans';
  tables: string[];
  file: string;
  startPosition: number;
  endPosition: number;
}

/** One table, recovered beside production at the comparison position. */
export interface TableVerdict {
  table: string;
  recovery: { rows: number; checksum: string } | null;
  production: { rows: number; checksum: string } | null;
  equal: boolean;
  /** Up to 20 differing chunks, with their primary-key bounds. */
  differingChunks: ChunkDiff[];
  chunks: number;
  /** Rows that differ between the two (confirmed row by row), and up to 10 of their keys. */
  differingRows: number;
  examples: string[];
  /** The bad event's tables: rows to write back, and rows changed again since (left as they are). */
  repairable?: number;
  changedSince?: number;
  changedSinceExamples?: string[];
  note: string;
}

export interface Verification {
  appliedTo: string;
  expected: string;
  /** The primary's snapshot position the comparison was made at (absent: not compared). */
  comparedAt?: string;
  tables: TableVerdict[];
  problems: string[];
}

/** What verify leaves for the cut-over: `<restore dir>/repair-plan.json`. */
interface RepairPlan {
  comparedAt: string;
  eventGtid: string;
  eventKind: 'ddl' | 'trans';
  tables: {
    table: string;
    primaryKey: string[];
    /** DML: each row to write back: its key, production's digest in the snapshot, the recovered row's (null: absent). */
    rows: { key: KeyValue[]; expected: string | null; recovered: string | null }[];
    changedSince: KeyValue[][];
    /** DDL: production had no such table (or an empty one) at comparedAt. */
    productionRows?: number | null;
  }[];
}

export interface CutoverTable {
  table: string;
  action: string;
  repaired?: number;
  alreadyInPlace?: number;
  /** Rows changed in production after the mistake: not overwritten, listed for a decision. */
  leftAsTheyAre?: number;
  leftExamples?: string[];
}

export interface CutoverResult {
  stagingSchema: string;
  tables: CutoverTable[];
  /** Where the full list of rows left for a decision is, when there are any. */
  leftFile?: string;
}

/** Rows locked and written back per transaction: long enough to be efficient, short enough to hold locks briefly. */
const REPAIR_BATCH = 500;

export function createRestoreVerifyActivities({ config }: ActivityDeps) {
  const planFile = (ref: RecoveryRef) => join(restoreDirOf(config, ref), 'repair-plan.json');
  const stagingOf = (ref: Pick<RecoveryRef, 'restoreId'>) => `restore_${createHash('sha256').update(ref.restoreId).digest('hex').slice(0, 12)}`;
  const onInstance = <T>(cluster: string, instance: string, fn: (c: Conn) => Promise<T>) => withInstance(config, { cluster, instance }, fn);

  /** The rows the bad event changed, by key, with the recovery instance's shape of its tables. */
  const eventRows = async (ref: RecoveryRef, recovery: RecoveryServer, event: EventRef): Promise<{ tables: EventTableRows[] } | { refusal: string }> => {
    const bad = await readTransactionImages(join(archiveDirFor(config, ref), event.file), { ...event });
    if (!bad) return { refusal: `${event.gtid} is not in the archive at ${event.file}:${event.startPosition}` };
    if (!bad.changes.length) return { refusal: `${event.gtid} was logged as statements: the rows it changed are not in the binlog` };
    const shapes: Record<string, KeyedTableShape | undefined> = {};
    await recovery.run(async (c) => {
      for (const t of new Set(bad.changes.map((x) => x.table))) {
        const s = await describeTable(c, t);
        shapes[t] = s ? { columns: s.columns, primaryKey: s.primaryKey } : undefined;
      }
    });
    return eventRowKeys(bad, shapes);
  };

  /**
   * Run `fn` inside a consistent snapshot on the primary, with the GTID position the snapshot is
   * at: the binlog position InnoDB's snapshot corresponds to (`binlog_snapshot_file/position`,
   * MariaDB's; the same mariadb-dump relies on), turned into a GTID position by BINLOG_GTID_POS.
   */
  const inPrimarySnapshot = <T>(cluster: string, primary: string, fn: (conn: Conn, position: string) => Promise<T>): Promise<T> =>
    onInstance(cluster, primary, async (c) => {
      const { dialect } = await dialectOf(c);
      await query(c, 'SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      await query(c, 'START TRANSACTION WITH CONSISTENT SNAPSHOT');
      try {
        const snapshot = dialect.parseSnapshotBinlog(await query<Record<string, unknown>[]>(c, dialect.snapshotBinlogQuery()));
        if (!snapshot) throw ApplicationFailure.nonRetryable(`${primary} reports no binlog snapshot position (binary log off?): production cannot be read at a known position`, 'NoSnapshotPosition');
        const gtidAt = dialect.binlogGtidPosition(snapshot.file, snapshot.position);
        const [row] = await query<{ p: string | null }[]>(c, gtidAt.sql, gtidAt.params);
        if (row?.p === null || row?.p === undefined) throw ApplicationFailure.nonRetryable(`${primary} cannot tell the GTID position of ${snapshot.file}:${snapshot.position}`, 'NoSnapshotPosition');
        heartbeat({ phase: `comparing at ${primary}'s snapshot`, position: row.p });
        return await fn(c, row.p);
      } finally {
        await query(c, 'ROLLBACK').catch(() => undefined);
      }
    });

  /**
   * Bring the recovery instance from the archive's end to exactly `position`, replicating from the
   * live primary: every write production took after the archive arrives, the skipped event (already
   * in its applied position) does not.
   */
  const catchUpTo = async (cluster: string, primary: string, recovery: RecoveryServer, method: ReplayMethod, position: string): Promise<string> => {
    const from = await appliedOn(recovery, method);
    const ahead = parseMariaGtidList(from).filter((g) => g.seq > (parseMariaGtidList(position).find((p) => p.domain === g.domain)?.seq ?? 0));
    if (ahead.length) throw ApplicationFailure.nonRetryable(`the recovery instance (${from}) is past the comparison position ${position}: they cannot be compared`, 'NotComparable');
    if (reachedAll(from, position)) return from;
    const source = getInstance(config, cluster, primary);
    const repl = resolveCredential(getCluster(config, cluster).credentials.replication);
    await recovery.run(async (c) => {
      const replication = await replicationOn(c);
      await replication.stop();
      await replication.setAppliedPosition(from);
      await replication.setSource({ host: source.host, port: Number(source.port), user: repl.user, password: repl.password, connectRetrySeconds: 1 });
      await replication.startUntil(position);
    });
    const deadline = Date.now() + 30 * 60_000;
    for (;;) {
      const at = String((await queryOn(recovery, 'SELECT @@gtid_slave_pos AS p'))[0]!.p);
      heartbeat({ phase: `catching up from ${primary} to ${position}`, at });
      if (reachedAll(at, position)) break;
      const status = await recovery.run(async (c) => (await replicationOn(c)).status());
      if (status?.lastSqlErrno) throw ApplicationFailure.nonRetryable(`catching up from ${primary} stopped at ${at}: ${status.lastSqlError}`, 'CatchUpFailed');
      if (status?.lastIoErrno) throw ApplicationFailure.retryable(`catching up from ${primary} cannot read its binlog at ${at}: ${status.lastIoError}`, 'CatchUpIoError');
      if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`the recovery instance did not reach ${position} from ${primary} within 30 min (at ${at})`, 'CatchUpTimeout');
      await sleep(100);
    }
    await recovery.run(async (c) => (await replicationOn(c)).stop());
    return position;
  };

  return {
    /**
     * Verify the recovery instance. It must be exactly at `expected`. For a skipped event it is
     * then compared with production at one position (see the top of this file): the bad event's
     * rows differ as they should (or were changed again since, and are listed), every other row
     * and table is equal. A point-in-time target is compared only when production is exactly
     * there (no write since): otherwise production is past it and a comparison would prove nothing.
     */
    async verifyRecovery(input: RecoveryRef & { method: ReplayMethod; primary: string; expected: string; tables: string[]; event?: EventRef; skipped: boolean }): Promise<Verification> {
      const { recovery } = recoveryServers(config, input);
      const appliedTo = await appliedOn(recovery, input.method);
      const problems: string[] = [];
      const want = parseMariaGtidList(input.expected)[0]!;
      if (parseMariaGtidList(appliedTo).find((g) => g.domain === want.domain)?.seq !== want.seq) {
        problems.push(`the recovery instance is at ${appliedTo}, not exactly at ${input.expected}`);
        return { appliedTo, expected: input.expected, tables: [], problems };
      }
      const event = input.skipped ? input.event : undefined;
      const rows = event?.kind === 'trans' ? await eventRows(input, recovery, event) : { tables: [] as EventTableRows[] };
      if ('refusal' in rows) {
        problems.push(rows.refusal);
        return { appliedTo, expected: input.expected, tables: [], problems };
      }
      return inPrimarySnapshot(input.cluster, input.primary, async (prod, comparedAt) => {
        if (!event && !samePosition(comparedAt, appliedTo)) {
          // A point in time: production is past it.
          const tables: TableVerdict[] = [];
          for (const table of input.tables) {
            const rec = await recovery.run((c) => checksumTable(c, table));
            tables.push({
              ...emptyVerdict(table),
              recovery: summary(rec),
              note: rec ? `${table}: ${rec.rows} row(s) at ${input.expected}; not compared: production is past that point (at ${comparedAt})` : `${table} does not exist at ${input.expected}`,
            });
          }
          return { appliedTo, expected: input.expected, tables, problems };
        }
        if (!reachedAll(comparedAt, input.expected)) {
          problems.push(`${input.primary} is at ${comparedAt}, short of the archive's ${input.expected}: the archive is not of this primary's history`);
          return { appliedTo, expected: input.expected, tables: [], problems };
        }
        await catchUpTo(input.cluster, input.primary, recovery, input.method, comparedAt);
        const plan: RepairPlan = { comparedAt, eventGtid: event?.gtid ?? '', eventKind: event?.kind ?? 'trans', tables: [] };
        const tables = await recovery.run((rec) => compareTables(prod, rec, { tables: input.tables, event, changed: rows.tables, comparedAt, problems, plan }));
        if (event) await writeJsonAtomically(planFile(input), plan);
        return { appliedTo, expected: input.expected, comparedAt, tables, problems };
      });
    },

    /**
     * What earlier restores left: their directories (a recovery instance's datadir is kept for
     * inspection: 350-500 MB each) and staging schemas on the primary (`restore_<hash>`, e.g. an
     * older run's `__damaged` copies), older than `olderThanDays`. A directory whose scratch server
     * still runs, or a run that is still going, is left alone. With `dryRun`, listed only.
     */
    async pruneRestores(input: { cluster: string; olderThanDays: number; primary?: string; dryRun: boolean }): Promise<{ directories: { path: string; ageDays: number; bytes: number }[]; schemas: string[]; kept: string[] }> {
      if (!Number.isFinite(input.olderThanDays) || input.olderThanDays < 0) throw ApplicationFailure.nonRetryable(`olderThanDays must be 0 or more, got ${input.olderThanDays}`, 'BadInput');
      // Runs still going keep what they use; ask Temporal which those are (a visibility query).
      const running: string[] = [];
      for await (const w of getClient().workflow.list({ query: `RunbookType = 'restore' AND Cluster = '${input.cluster.replace(/'/g, '')}' AND ExecutionStatus = 'Running'` })) running.push(w.workflowId);
      const root = join(config.backupDir, input.cluster, 'restore');
      const cutoff = Date.now() - input.olderThanDays * 86_400_000;
      const directories: { path: string; ageDays: number; bytes: number }[] = [];
      const kept: string[] = [];
      const pruned = new Set<string>();
      for (const e of await readdir(root, { withFileTypes: true }).catch(() => [])) {
        if (!e.isDirectory()) continue;
        const path = join(root, e.name);
        const mtime = (await stat(path)).mtimeMs;
        if (mtime > cutoff) continue;
        if (running.some((id) => id.replace(/[^A-Za-z0-9_.-]/g, '_') === e.name)) {
          kept.push(`${path}: its run is still going`);
          continue;
        }
        if (serverRunsFrom(path)) {
          kept.push(`${path}: a server still runs from it`);
          continue;
        }
        directories.push({ path, ageDays: Math.floor((Date.now() - mtime) / 86_400_000), bytes: await dirSize(path) });
        pruned.add(e.name);
        if (!input.dryRun) await rm(path, { recursive: true, force: true });
      }
      const schemas: string[] = [];
      if (input.primary) {
        await onInstance(input.cluster, input.primary, async (c) => {
          const rows = await query<{ s: string; created: string | null }[]>(
            c,
            "SELECT s.SCHEMA_NAME AS s, MAX(t.CREATE_TIME) AS created FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME WHERE s.SCHEMA_NAME LIKE 'restore\\_%' GROUP BY s.SCHEMA_NAME",
          );
          for (const r of rows) {
            const ours = [...pruned].some((id) => stagingOf({ restoreId: id }) === r.s);
            const old = r.created !== null && Date.parse(`${r.created.replace(' ', 'T')}Z`) < cutoff;
            if (!/^restore_[0-9a-f]{12}$/.test(r.s) || !(ours || old || r.created === null)) continue;
            if (running.some((id) => stagingOf({ restoreId: id.replace(/[^A-Za-z0-9_.-]/g, '_') }) === r.s)) continue;
            schemas.push(r.s);
            if (!input.dryRun) await query(c, `DROP DATABASE IF EXISTS ${quoteIdent(r.s)}`);
          }
        });
      }
      return { directories, schemas, kept };
    },

    /**
     * After approval, under the cluster lock: write the repair into production (see the top of
     * this file). DML rows in place by compare-and-set; a dropped table back by a staged copy and
     * an atomic RENAME. Safe to run again.
     */
    async cutOverTables(input: RecoveryRef & { primary: string; tables: string[] }): Promise<CutoverResult> {
      const { recovery, dir } = recoveryServers(config, input);
      let plan: RepairPlan;
      try {
        plan = JSON.parse(await readFile(planFile(input), 'utf8')) as RepairPlan;
      } catch {
        throw ApplicationFailure.nonRetryable(`no repair plan in ${dir}: the recovery was not verified`, 'NotVerified');
      }
      const staging = stagingOf(input);
      const out: CutoverTable[] = [];
      const left: { table: string; keys: KeyValue[][] }[] = [];
      for (const table of input.tables) {
        const entry = plan.tables.find((t) => t.table === table);
        if (!entry) throw ApplicationFailure.nonRetryable(`${table} is not in the verified repair plan`, 'NotVerified');
        if (plan.eventKind === 'ddl') out.push(await swapTableIn(input, recovery, staging, entry));
        else {
          const done = await repairRows(input, recovery, staging, entry);
          out.push(done.result);
          if (done.left.length) left.push({ table, keys: done.left });
        }
      }
      // The staging schema held copies only: once everything is in place it goes (its DROP replicates).
      await onInstance(input.cluster, input.primary, (c) => query(c, `DROP DATABASE IF EXISTS ${quoteIdent(staging)}`));
      const result: CutoverResult = { stagingSchema: staging, tables: out };
      if (left.length) {
        result.leftFile = join(dir, 'left-for-decision.json');
        await writeJsonAtomically(result.leftFile, { comparedAt: plan.comparedAt, event: plan.eventGtid, tables: left });
      }
      return result;
    },
  };

  /**
   * Every compared table in production's snapshot (`prod`) and on the recovery instance, chunk by
   * chunk, differing chunks row by row. Problems go to `o.problems`; the bad event's rows to
   * write back go to `o.plan`.
   */
  async function compareTables(
    prod: Conn,
    rec: Conn,
    o: { tables: string[]; event?: EventRef; changed: EventTableRows[]; comparedAt: string; problems: string[]; plan: RepairPlan },
  ): Promise<TableVerdict[]> {
    const { event, problems, plan } = o;
    const sides = { a: 'production', b: 'recovery' };
    const tables: TableVerdict[] = [];
    for (const table of o.tables) {
      heartbeat({ phase: `comparing ${table}`, position: o.comparedAt });
      // Cut where production's key says, then checksum both at once (they are different servers).
      const boundaries = (await primaryKeyBoundaries(prod, table)) ?? undefined;
      const [p, r] = await Promise.all([checksumTable(prod, table, { boundaries }), checksumTable(rec, table, { boundaries })]);
      const diff = diffChecksums(p, r, sides);
      const verdict: TableVerdict = {
        ...emptyVerdict(table),
        production: summary(p),
        recovery: summary(r),
        equal: diff.equal,
        differingChunks: diff.differingChunks.slice(0, 20),
        chunks: Math.max(p?.chunks.length ?? 0, r?.chunks.length ?? 0),
        note: diff.note,
      };
      tables.push(verdict);
      if (event?.kind === 'ddl' && event.tables.includes(table)) {
        // DDL: what matters is that the table is recovered; production's copy, if any, is the cut-over's business.
        if (!r) problems.push(`the recovery instance lacks ${table}`);
        else {
          verdict.note = p ? `${table}: ${r.rows} row(s) recovered; production has a table of that name with ${p.rows} row(s)` : `${table}: ${r.rows} row(s) recovered; production has no such table`;
          plan.tables.push({ table, primaryKey: r.primaryKey, rows: [], changedSince: [], productionRows: p?.rows ?? null });
        }
        continue;
      }
      if (!p || !r || !sameShape(p, r)) {
        if (p || r) problems.push(diff.note);
        continue;
      }
      // The rows behind each differing chunk, by key.
      const shape = (await describeTable(prod, table))!;
      const differing = new Map<string, unknown[]>();
      for (const d of diff.differingChunks) {
        heartbeat({ phase: `rows of ${table} ${describeRange(d.lower, d.upper)}` });
        const rd = await diffChunkRows(prod, rec, shape, d.lower, d.upper);
        for (const k of [...rd.onlyA, ...rd.onlyB, ...rd.changed]) differing.set(keyText(k), k);
      }
      verdict.differingRows = differing.size;
      verdict.examples = [...differing.values()].slice(0, 10).map(showTuple);
      const changed = o.changed.find((t) => t.table === table);
      if (!changed) {
        if (differing.size) {
          problems.push(
            !shape.primaryKey.length
              ? `${table} differs from production (${differing.size} row(s)); it has no primary key to name them`
              : `${table} differs from production in ${differing.size} row(s)${event ? ' the skipped event did not touch' : ''}, e.g. ${verdict.examples.slice(0, 3).join(', ')}`,
          );
        }
        continue;
      }
      // The bad event's table: only its rows may differ; those that do not were changed again since.
      const mine = new Set(changed.keys.map((key) => keyText(key)));
      const outside = [...differing.keys()].filter((x) => !mine.has(x));
      if (outside.length) {
        problems.push(`${table} differs from production in ${outside.length} row(s) the skipped event did not touch, e.g. ${outside.slice(0, 3).map((x) => showTuple(differing.get(x)!)).join(', ')}`);
        continue;
      }
      const repair = changed.keys.filter((key) => differing.has(keyText(key)));
      const since = changed.keys.filter((key) => !differing.has(keyText(key)));
      const expected = await rowDigests(prod, shape, repair);
      const recovered = await rowDigests(rec, shape, repair);
      plan.tables.push({
        table,
        primaryKey: shape.primaryKey,
        rows: repair.map((key) => ({ key, expected: expected.get(keyText(key)) ?? null, recovered: recovered.get(keyText(key)) ?? null })),
        changedSince: since,
      });
      verdict.repairable = repair.length;
      verdict.changedSince = since.length;
      verdict.changedSinceExamples = since.slice(0, 10).map(showTuple);
      verdict.note =
        `${table}: ${repair.length} row(s) the skipped event changed differ from production and are recovered` +
        (since.length ? `; ${since.length} were changed again after it (e.g. ${verdict.changedSinceExamples.slice(0, 3).join(', ')}) and are left as they are` : '') +
        `; every other row is equal (${p.rows} row(s) in production, ${r.rows} recovered, at ${o.comparedAt})`;
    }
    return tables;
  }

  /**
   * The bad DML event's rows, written back in place: staged from the recovery instance, then in
   * batches, each a transaction that locks its rows and writes back only those still as the
   * snapshot showed them (or skips those already written back by an earlier attempt).
   */
  async function repairRows(ref: RecoveryRef & { primary: string }, recovery: RecoveryServer, staging: string, entry: RepairPlan['tables'][number]): Promise<{ result: CutoverTable; left: KeyValue[][] }> {
    const { table } = entry;
    const { db, name } = parseTableName(table);
    const left: KeyValue[][] = entry.changedSince.slice();
    const toWrite = entry.rows.filter((r) => r.recovered !== null);
    const shape = await onInstance(ref.cluster, ref.primary, (c) => describeTable(c, table));
    if (!shape) throw ApplicationFailure.nonRetryable(`production has no ${table} any more: nothing to write the rows back into`, 'ProductionChanged');
    const stagedShape: TableShape = { ...shape, db: staging };
    if (toWrite.length) await stageRows(ref, recovery, staging, table, shape, toWrite.map((r) => r.key));
    const columns = await onInstance(ref.cluster, ref.primary, (c) => writableColumns(c, { db, name }));
    const pk = shape.primaryKey;
    const on = pk.map((c) => `t.${quoteIdent(c)} = s.${quoteIdent(c)}`).join(' AND ');
    const set = columns.filter((c) => !pk.includes(c)).map((c) => `t.${quoteIdent(c)} = s.${quoteIdent(c)}`).join(', ');
    const list = columns.map(quoteIdent).join(', ');
    let repaired = 0;
    let already = 0;
    await onInstance(ref.cluster, ref.primary, async (c) => {
      for (let i = 0; i < entry.rows.length; i += REPAIR_BATCH) {
        const batch = entry.rows.slice(i, i + REPAIR_BATCH);
        heartbeat({ phase: `writing back ${table}`, done: i, of: entry.rows.length });
        await query(c, 'START TRANSACTION');
        try {
          const now = await rowDigests(c, shape, batch.map((r) => r.key), { forUpdate: true });
          const update: KeyValue[][] = [];
          const insert: KeyValue[][] = [];
          const remove: KeyValue[][] = [];
          for (const r of batch) {
            const current = now.get(keyText(r.key)) ?? null;
            if (current === r.recovered) already++;
            else if (current !== r.expected) left.push(r.key); // changed since the comparison: never overwritten
            else if (r.recovered === null) remove.push(r.key);
            else if (r.expected === null) insert.push(r.key);
            else update.push(r.key);
          }
          if (update.length) await query(c, `UPDATE ${qualifiedName(shape)} AS t JOIN ${qualifiedName(stagedShape)} AS s ON ${on} SET ${set} WHERE ${keysWhere(pk, update.length, 't')}`, update.flat());
          if (insert.length) await query(c, `INSERT INTO ${qualifiedName(shape)} (${list}) SELECT ${list} FROM ${qualifiedName(stagedShape)} WHERE ${keysWhere(pk, insert.length)}`, insert.flat());
          if (remove.length) await query(c, `DELETE FROM ${qualifiedName(shape)} WHERE ${keysWhere(pk, remove.length)}`, remove.flat());
          const written = [...update, ...insert, ...remove];
          if (written.length) {
            // Read back inside the transaction: exactly the recovered rows, or nothing is committed.
            const after = await rowDigests(c, shape, written);
            const byKey = new Map(batch.map((r) => [keyText(r.key), r.recovered]));
            const wrong = written.filter((k) => (after.get(keyText(k)) ?? null) !== byKey.get(keyText(k)));
            if (wrong.length) throw ApplicationFailure.nonRetryable(`writing back ${table} ${wrong.slice(0, 3).map(showTuple).join(', ')} did not give the recovered rows: rolled back`, 'RepairMismatch');
          }
          await query(c, 'COMMIT');
          repaired += written.length;
        } catch (err) {
          await query(c, 'ROLLBACK').catch(() => undefined);
          throw err;
        }
      }
    });
    const leftNote = left.length ? `; ${left.length} row(s) changed in production after the mistake were left as they are (e.g. ${left.slice(0, 3).map(showTuple).join(', ')})` : '';
    return {
      result: {
        table,
        action: `${repaired} row(s) written back in place${already ? `, ${already} already in place` : ''}${leftNote}`,
        repaired,
        alreadyInPlace: already,
        leftAsTheyAre: left.length,
        leftExamples: left.slice(0, 10).map(showTuple),
      },
      left,
    };
  }

  /** Copy the recovered rows named by `keys` into `<staging>.<table>` on the primary (skipped when already there). */
  async function stageRows(ref: RecoveryRef & { primary: string }, recovery: RecoveryServer, staging: string, table: string, shape: TableShape, keys: KeyValue[][]): Promise<void> {
    const { db, name } = parseTableName(table);
    const want = await recovery.run((c) => rowDigests(c, shape, keys));
    const stagedShape: TableShape = { ...shape, db: staging };
    const staged = await onInstance(ref.cluster, ref.primary, async (c) => ((await describeTable(c, `${staging}.${name}`)) ? rowDigests(c, stagedShape, keys) : undefined));
    if (staged && [...want].every(([k, d]) => staged.get(k) === d)) return;
    // On the recovery instance, a table of exactly those rows (unlogged: it is scratch) ...
    const scratch = `${staging}_rows`;
    await recovery.run(async (c) => {
      await c.query('SET SESSION sql_log_bin = 0');
      await c.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(scratch)}`);
      await c.query(`DROP TABLE IF EXISTS ${quoteIdent(scratch)}.${quoteIdent(name)}`);
      await c.query(`CREATE TABLE ${quoteIdent(scratch)}.${quoteIdent(name)} LIKE ${quoteIdent(db)}.${quoteIdent(name)}`);
      for (let i = 0; i < keys.length; i += REPAIR_BATCH) {
        const part = keys.slice(i, i + REPAIR_BATCH);
        await c.query(`INSERT INTO ${quoteIdent(scratch)}.${quoteIdent(name)} SELECT * FROM ${quoteIdent(db)}.${quoteIdent(name)} WHERE ${keysWhere(shape.primaryKey, part.length)}`, part.flat());
      }
    });
    // ... dumped and loaded into the staging schema on the primary (it replicates like any write).
    await copyTable(ref, recovery, scratch, name, staging);
    await recovery.run((c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)}`));
    const check = await onInstance(ref.cluster, ref.primary, (c) => rowDigests(c, stagedShape, keys));
    const missing = [...want].filter(([k, d]) => check.get(k) !== d);
    if (missing.length) throw ApplicationFailure.retryable(`the staged copy of ${table} differs from the recovery instance in ${missing.length} row(s)`, 'CopyMismatch');
  }

  /** `mariadb-dump` of one table from the recovery instance, loaded into `toSchema` on the primary. */
  async function copyTable(ref: RecoveryRef & { primary: string }, recovery: RecoveryServer, fromSchema: string, name: string, toSchema: string): Promise<void> {
    const inst = getInstance(config, ref.cluster, ref.primary);
    const admin = resolveCredential(getCluster(config, ref.cluster).credentials.admin);
    const tmp = await mkdtemp(join(tmpdir(), 'runbook-cutover-'));
    try {
      const dump = join(tmp, 'table.sql');
      // No triggers: a trigger cannot follow its table across schemas in a RENAME.
      await runTool(toolPath('mariadb-dump'), [...recovery.client.args, '--single-transaction', '--skip-triggers', '--hex-blob', fromSchema, name], {
        credentials: recovery.client.credentials,
        stdoutFile: dump,
        onProgress: (bytes) => heartbeat({ phase: `dump ${fromSchema}.${name}`, bytes }),
      });
      await onInstance(ref.cluster, ref.primary, (c) => query(c, `CREATE DATABASE IF NOT EXISTS ${quoteIdent(toSchema)}`));
      await runTool(toolPath('mariadb'), ['--binary-mode', `--host=${inst.host}`, `--port=${inst.port}`, toSchema], {
        credentials: admin,
        stdinFile: dump,
        onProgress: (bytes) => heartbeat({ phase: `load ${toSchema}.${name}`, bytes }),
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * DDL recovery: the dropped table back, through a staged copy checked against the recovery
   * instance and one atomic RENAME. Refused when production has a table of that name with rows
   * (written since the DROP: a swap would lose them); an empty one is swapped out and dropped.
   */
  async function swapTableIn(ref: RecoveryRef & { primary: string }, recovery: RecoveryServer, staging: string, entry: RepairPlan['tables'][number]): Promise<CutoverTable> {
    const { table } = entry;
    const { db, name } = parseTableName(table);
    const recovered = await recovery.run((c) => checksumTable(c, table));
    if (!recovered) throw ApplicationFailure.nonRetryable(`the recovery instance has no ${table} to copy back`, 'NothingToCopy');
    const stagedName = `${staging}.${name}`;
    const [now, staged] = await onInstance(ref.cluster, ref.primary, async (c) => [await checksumTable(c, table, { boundaries: recovered.boundaries }), await checksumTable(c, stagedName, { boundaries: recovered.boundaries })] as const);
    // An earlier attempt renamed it in: the staged copy is gone and production has the table.
    if (now && !staged && (entry.productionRows ?? 0) === 0 && diffChecksums(recovered, now).equal) return { table, action: 'already in place' };
    if (now && now.rows > 0) {
      throw ApplicationFailure.nonRetryable(
        `production has ${table} again, with ${now.rows} row(s) written since the DROP: swapping the recovered table in would lose them; merge by hand from the recovery instance`,
        'ProductionChanged',
      );
    }
    if (!staged || !diffChecksums(recovered, staged).equal) {
      heartbeat(`copying ${table}`);
      await copyTable(ref, recovery, db, name, staging);
      const check = await onInstance(ref.cluster, ref.primary, (c) => checksumTable(c, stagedName, { boundaries: recovered.boundaries }));
      if (!check || !diffChecksums(recovered, check).equal) throw ApplicationFailure.retryable(`the copy of ${table} in ${staging} differs from the recovery instance`, 'CopyMismatch');
    }
    const q = (d: string, t: string) => `${quoteIdent(d)}.${quoteIdent(t)}`;
    await onInstance(ref.cluster, ref.primary, (c) =>
      query(c, now ? `RENAME TABLE ${q(db, name)} TO ${q(staging, `${name}__empty`)}, ${q(staging, name)} TO ${q(db, name)}` : `RENAME TABLE ${q(staging, name)} TO ${q(db, name)}`),
    );
    return { table, action: now ? `restored (${recovered.rows} row(s)); production's empty table of that name was dropped` : `restored (${recovered.rows} row(s); it was missing)` };
  }
}

/** Whether a mariadbd process runs with its files under `dir` (a restore's scratch server). */
function serverRunsFrom(dir: string): boolean {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${dir}/`)) return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

function emptyVerdict(table: string): TableVerdict {
  return { table, recovery: null, production: null, equal: false, differingChunks: [], chunks: 0, differingRows: 0, examples: [], note: '' };
}

function summary(t: TableChecksum | null): { rows: number; checksum: string } | null {
  return t ? { rows: t.rows, checksum: t.checksum } : null;
}

/** Two GTID positions equal in every domain (server ids aside). */
function samePosition(a: string, b: string): boolean {
  return reachedAll(a, b) && reachedAll(b, a);
}

function sameShape(a: TableChecksum, b: TableChecksum): boolean {
  return a.columns.join(',') === b.columns.join(',') && a.columnTypes.join(',') === b.columnTypes.join(',') && a.primaryKey.join(',') === b.primaryKey.join(',');
}
