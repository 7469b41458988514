/**
 * What the flashback checks need to know about tables and the binary log on a live server: each
 * table's columns and primary key (`@N` = ORDINAL_POSITION, as mariadb-binlog prints row images),
 * and where the binary log is now.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { RunbookConfig } from '../../config/load';
import type { TableShape } from '../../core/binlogEvents';
import type { BinlogPosition } from '../../core/types';
import { query } from './connect';
import { withInstance } from './instance';
import { dialectOf } from './probe';

  /** Column names and primary key (`@N` = ORDINAL_POSITION) of each table, from the primary. */
export const tableShapes = (config: RunbookConfig, cluster: string, instance: string, tables: string[]) =>
  withInstance(config, { cluster, instance }, async (conn) => {
    const shapes: Record<string, (TableShape & { names: string[]; dataTypes: string[] }) | undefined> = {};
    for (const table of tables) {
      const [db, t] = table.split('.') as [string, string];
      const columns = await query<{ name: string; ordinal: number; type: string }[]>(
        conn,
        'SELECT COLUMN_NAME AS name, ORDINAL_POSITION AS ordinal, DATA_TYPE AS type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
        [db, t],
      );
      if (!columns.length) continue; // gone since: a later DROP, which the conflict check names
      const key = await query<{ name: string }[]>(
        conn,
        "SELECT COLUMN_NAME AS name FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
        [db, t],
      );
      shapes[table] = {
        columns: columns.length,
        names: columns.map((c) => c.name),
        dataTypes: columns.map((c) => String(c.type).toLowerCase()),
        primaryKey: key.map((k) => ({ name: k.name, ordinal: Number(columns.find((c) => c.name === k.name)!.ordinal) })),
      };
    }
    return shapes;
  });

/** Where the server's binary log is now (refused when it is off). */
export const binlogPosition = (config: RunbookConfig, cluster: string, instance: string) =>
  withInstance(config, { cluster, instance }, async (conn): Promise<BinlogPosition> => {
    const { dialect } = await dialectOf(conn);
    const [row] = await query<{ File: string; Position: number | string }[]>(conn, dialect.binlogStatusQuery());
    if (!row) throw ApplicationFailure.nonRetryable(`${instance} has the binary log off: flashback needs the primary's binlog`, 'BinlogDisabled');
    return { file: row.File, position: Number(row.Position) };
  });
