/**
 * Writes to a revoke's sensitive tables in the primary's binary logs, for the access report: the
 * binlog records row changes and when, never reads and never who.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binlogHeaderTime } from '../../core/binlogEvents';
import { tableKey, type AccessEvent, type Evidence, type TableRef } from '../../core/grants';
import { sqlTime } from '../../core/format';
import { query, type Conn } from '../mysql/connect';
import { serverClock } from '../mysql/grants';
import { runTool, toolPath, type ToolCredentials } from '../process/tools';
import { forEachDecodedGroup } from './binlogFile';

/**
 * Writes to the objects between `since` and `until` in the primary's binary logs, read over the
 * replication protocol. The binlog records row changes and when, never reads and never who: each
 * write is `unknown` here unless an audit or general log names the statement's account.
 */
export async function readWriteEvidence(conn: Conn, login: { host: string; port: number; credentials: ToolCredentials }, instance: string, objects: TableRef[], since: number, until: number): Promise<Evidence> {
  const logs = await query<{ Log_name: string }[]>(conn, 'SHOW BINARY LOGS').catch(() => []);
  const clock = await serverClock(conn);
  if (!logs.length) return { sources: [{ instance, kind: 'binlog', shows: 'writes', note: 'binary log off or empty' }], events: [] };
  const dir = await mkdtemp(join(tmpdir(), 'runbook-revoke-binlog-'));
  try {
    const out = join(dir, 'binlog.txt');
    const base = ['--read-from-remote-server', `--host=${login.host}`, `--port=${login.port}`, '--base64-output=DECODE-ROWS', '-vv'];
    // The first event of the oldest binlog: where the binlog's evidence starts.
    const head = join(dir, 'head.txt');
    await runTool(toolPath('mariadb-binlog'), [...base, '--stop-position=1024', logs[0]!.Log_name], { credentials: login.credentials, stdoutFile: head, env: { TZ: 'UTC' }, timeoutMs: 60_000 });
    const firstHeader = (await readFile(head, 'utf8')).split('\n').find((l) => binlogHeaderTime(l) !== undefined);
    const from = firstHeader ? binlogHeaderTime(firstHeader) : undefined;
    await runTool(
      toolPath('mariadb-binlog'),
      [...base, `--start-datetime=${sqlTime(Math.max(since, 0)).slice(0, 19)}`, `--stop-datetime=${sqlTime(until + 1000).slice(0, 19)}`, '--to-last-log', logs[0]!.Log_name],
      { credentials: login.credentials, stdoutFile: out, env: { TZ: 'UTC' }, timeoutMs: 30 * 60_000 },
    );
    const events: AccessEvent[] = [];
    const wanted = new Set(objects.map(tableKey));
    await forEachDecodedGroup(out, logs[0]!.Log_name, (g) => {
      for (const r of g.rowEvents) {
        if (wanted.has(r.table) && g.timestamp >= since && g.timestamp <= until) {
          events.push({ instance, at: g.timestamp, account: 'unknown (the binlog does not record who)', action: 'write', object: r.table, source: 'binlog', detail: `${g.gtid}: ${r.type} of ${r.rows} row(s)${g.statements[0] ? `: ${g.statements[0].slice(0, 150)}` : ''}` });
        }
      }
    });
    return { sources: [{ instance, kind: 'binlog', shows: 'writes', ...(from !== undefined ? { from, to: clock.now } : {}), note: `${logs.length} binlog file(s) from ${logs[0]!.Log_name}: writes, not reads, and not who` }], events };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
