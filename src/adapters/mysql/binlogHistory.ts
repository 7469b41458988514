/**
 * A server's binlog history as GTIDs: its files (`SHOW BINARY LOGS`) and, per file, the
 * transactions `SHOW BINLOG EVENTS` places in it (core/failback.ts cuts the rows). Read over SQL,
 * so it works for any remote host; files are read newest first and only as far as asked.
 */
import type { BinlogFileEvents } from '../../core/failback';
import { binlogFileEvents } from '../../core/failback';
import { query, type Conn } from './connect';

export interface BinlogHistory {
  /** Oldest first. */
  files: string[];
  /** One file's transactions and head state (cached). */
  read(file: string): Promise<BinlogFileEvents>;
  /** The GTID state at the head of the oldest file: what the server no longer has in binlogs. */
  floor(): Promise<string>;
}

export async function binlogHistory(conn: Conn, beat: () => void = () => {}): Promise<BinlogHistory> {
  const files = (await query<{ Log_name: string }[]>(conn, 'SHOW BINARY LOGS')).map((r) => r.Log_name);
  const cache = new Map<string, BinlogFileEvents>();
  const read = async (file: string) => {
    const hit = cache.get(file);
    if (hit) return hit;
    beat();
    const rows = await query<{ Pos: unknown; Event_type: unknown; End_log_pos: unknown; Info: unknown }[]>(conn, 'SHOW BINLOG EVENTS IN ?', [file], 10 * 60_000);
    const events = binlogFileEvents(file, rows);
    cache.set(file, events);
    return events;
  };
  // Only the head of the oldest file: its Gtid_list event is among the first few.
  const floor = async () => (files.length ? binlogFileEvents(files[0]!, await query(conn, 'SHOW BINLOG EVENTS IN ? LIMIT 4', [files[0]])).startState : '');
  return { files, read, floor };
}
