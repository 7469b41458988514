import { describe, it, expect } from 'vitest';
import { detectFlavor, dialectFor } from '../../src/adapters/mysql/dialect';
import { compareMariaGtid, formatMariaGtidList, mariaErrantDomains, normalizeMysqlGtidSet, parseMariaGtidList } from '../../src/core/gtid';

const maria = dialectFor('mariadb', { major: 10, minor: 11, patch: 19 });
const mysql = dialectFor('mysql', { major: 8, minor: 0, patch: 36 });
const mysql8021 = dialectFor('mysql', { major: 8, minor: 0, patch: 21 });
const mysql8022 = dialectFor('mysql', { major: 8, minor: 0, patch: 22 });

const UUID_A = '3E11FA47-71CA-11E1-9E33-C80AA9429562';
const UUID_B = '4d2f8a1c-0b3e-11ee-8c1a-0242ac120002';

// ---------------------------------------------------------------------------
describe('detectFlavor', () => {
  it('detects MariaDB from the version string', () => {
    expect(detectFlavor('10.11.19-MariaDB-0+deb12u1', 'Debian 12')).toEqual({
      flavor: 'mariadb',
      major: 10,
      minor: 11,
      patch: 19,
    });
  });
  it('detects MariaDB from the version comment alone and strips the 5.5.5- prefix', () => {
    expect(detectFlavor('5.5.5-10.6.18-log', 'mariadb.org binary distribution')).toEqual({
      flavor: 'mariadb',
      major: 10,
      minor: 6,
      patch: 18,
    });
  });
  it('accepts MariaDB 10.5 and 11.x', () => {
    expect(detectFlavor('10.5.0-MariaDB').major).toBe(10);
    expect(detectFlavor('11.4.2-MariaDB-log')).toMatchObject({ flavor: 'mariadb', major: 11, minor: 4, patch: 2 });
  });
  it('detects MySQL', () => {
    expect(detectFlavor('8.0.36')).toEqual({ flavor: 'mysql', major: 8, minor: 0, patch: 36 });
    expect(detectFlavor('8.4.0-0ubuntu0.24.04.1', '(Ubuntu)')).toEqual({ flavor: 'mysql', major: 8, minor: 4, patch: 0 });
    expect(detectFlavor('8.0.36-28', 'Percona Server (GPL), Release 28')).toMatchObject({ flavor: 'mysql', patch: 36 });
  });
  it('rejects MySQL < 8.0 naming the version string', () => {
    expect(() => detectFlavor('5.7.44-log', 'MySQL Community Server (GPL)')).toThrow(/'5\.7\.44-log'/);
    expect(() => detectFlavor('5.7.44')).toThrow(/Unsupported server version '5\.7\.44': MySQL 5\.7\.44/);
  });
  it('rejects MariaDB < 10.5 naming the version string', () => {
    expect(() => detectFlavor('10.4.34-MariaDB')).toThrow(/Unsupported server version '10\.4\.34-MariaDB': MariaDB 10\.4\.34/);
    expect(() => detectFlavor('5.5.5-10.3.39-MariaDB')).toThrow(/'5\.5\.5-10\.3\.39-MariaDB'/);
  });
  it('rejects garbage', () => {
    expect(() => detectFlavor('banana')).toThrow("cannot parse server version 'banana'");
  });
});

describe('dialectFor', () => {
  it('exposes flavour and version, defaulting to newest syntax', () => {
    expect(maria.flavor).toBe('mariadb');
    expect(mysql.flavor).toBe('mysql');
    expect(mysql.version).toEqual({ major: 8, minor: 0, patch: 36 });
    expect(dialectFor('mysql').stopReplica()).toBe('STOP REPLICA');
    expect(dialectFor('mariadb').stopReplica()).toBe('STOP SLAVE');
  });
  it('rejects unsupported versions and flavours', () => {
    expect(() => dialectFor('mysql', { major: 5, minor: 7, patch: 44 })).toThrow(/MySQL 5\.7\.44/);
    expect(() => dialectFor('mariadb', { major: 10, minor: 4, patch: 0 })).toThrow(/MariaDB 10\.4\.0/);
    expect(() => dialectFor('postgres' as never)).toThrow(/Unknown flavor/);
  });
  it('accepts detectFlavor output directly', () => {
    const d = detectFlavor('8.0.21');
    expect(dialectFor(d.flavor, d).replicaStatusQuery()).toBe('SHOW SLAVE STATUS');
  });
});

// ---------------------------------------------------------------------------
describe('variablesQuery / parseVariables', () => {
  const COLUMNS = [
    'server_id',
    'read_only',
    'super_read_only',
    'log_bin',
    'log_slave_updates',
    'binlog_format',
    'gtid_strict_mode',
    'gtid_binlog_pos',
    'gtid_current_pos',
    'gtid_slave_pos',
    'gtid_executed',
    'hostname',
    'port',
  ];
  const aliases = (sql: string) => [...sql.matchAll(/ AS (\w+)/g)].map((m) => m[1]);

  it('MariaDB query returns every column, NULL for MySQL-only ones', () => {
    const sql = maria.variablesQuery();
    expect(sql.startsWith('SELECT ')).toBe(true);
    expect(aliases(sql)).toEqual(COLUMNS);
    expect(sql).toContain('NULL AS super_read_only');
    expect(sql).toContain('NULL AS gtid_executed');
    expect(sql).toContain('@@global.gtid_strict_mode AS gtid_strict_mode');
    expect(sql).toContain('@@global.gtid_slave_pos AS gtid_slave_pos');
    expect(sql).toContain('@@global.server_id AS server_id');
  });

  it('MySQL query returns every column, NULL for MariaDB-only ones', () => {
    const sql = mysql.variablesQuery();
    expect(aliases(sql)).toEqual(COLUMNS);
    expect(sql).toContain('@@global.super_read_only AS super_read_only');
    expect(sql).toContain('@@global.gtid_mode AS gtid_strict_mode');
    expect(sql).toContain('@@global.gtid_executed AS gtid_executed');
    expect(sql).toContain('NULL AS gtid_slave_pos');
    expect(sql).toContain('NULL AS gtid_binlog_pos');
    expect(sql).toContain('@@global.log_replica_updates AS log_slave_updates');
    expect(mysql8021.variablesQuery()).toContain('@@global.log_slave_updates AS log_slave_updates');
  });

  it('parses a MariaDB row (numbers, Buffer)', () => {
    const v = maria.parseVariables({
      server_id: 2,
      read_only: 1,
      super_read_only: null,
      log_bin: 1,
      log_slave_updates: 1,
      binlog_format: Buffer.from('ROW'),
      gtid_strict_mode: 1,
      gtid_binlog_pos: '0-1-42,1-2-7',
      gtid_current_pos: '0-1-42,1-2-7',
      gtid_slave_pos: '0-1-42',
      gtid_executed: null,
      hostname: 'db2',
      port: 3306,
    });
    expect(v).toEqual({
      serverId: 2,
      readOnly: true,
      superReadOnly: null,
      binlogEnabled: true,
      logReplicaUpdates: true,
      binlogFormat: 'ROW',
      gtidStrictMode: true,
      gtid: { binlogPos: '0-1-42,1-2-7', currentPos: '0-1-42,1-2-7', slavePos: '0-1-42' },
      hostname: 'db2',
      port: 3306,
    });
  });

  it('parses a MariaDB primary with empty slave pos and string/bigint values', () => {
    const v = maria.parseVariables({
      server_id: '1',
      read_only: 'OFF',
      super_read_only: null,
      log_bin: BigInt(1),
      log_slave_updates: 0,
      binlog_format: 'MIXED',
      gtid_strict_mode: 'OFF',
      gtid_binlog_pos: '0-1-100',
      gtid_current_pos: '0-1-100',
      gtid_slave_pos: '',
      gtid_executed: null,
      hostname: 'db1',
      port: '3307',
    });
    expect(v.serverId).toBe(1);
    expect(v.readOnly).toBe(false);
    expect(v.binlogEnabled).toBe(true);
    expect(v.logReplicaUpdates).toBe(false);
    expect(v.gtidStrictMode).toBe(false);
    expect(v.gtid).toEqual({ binlogPos: '0-1-100', currentPos: '0-1-100', slavePos: '' });
    expect(v.port).toBe(3307);
  });

  it('parses a MySQL row, stripping newlines from gtid_executed', () => {
    const v = mysql.parseVariables({
      server_id: 101,
      read_only: 1,
      super_read_only: 1,
      log_bin: 1,
      log_slave_updates: 1,
      binlog_format: 'ROW',
      gtid_strict_mode: 'ON',
      gtid_binlog_pos: null,
      gtid_current_pos: null,
      gtid_slave_pos: null,
      gtid_executed: `${UUID_A}:1-5:7,\n${UUID_B}:1-3`,
      hostname: 'mysql-b',
      port: 3306,
    });
    expect(v).toEqual({
      serverId: 101,
      readOnly: true,
      superReadOnly: true,
      binlogEnabled: true,
      logReplicaUpdates: true,
      binlogFormat: 'ROW',
      gtidStrictMode: true,
      gtid: { executed: `${UUID_A}:1-5:7,${UUID_B}:1-3` },
      hostname: 'mysql-b',
      port: 3306,
    });
  });

  it('MySQL gtid_mode values other than ON are not strict', () => {
    const base = {
      server_id: 1,
      read_only: 0,
      super_read_only: 0,
      log_bin: 1,
      log_slave_updates: 1,
      binlog_format: 'ROW',
      gtid_executed: '',
    };
    expect(mysql.parseVariables({ ...base, gtid_strict_mode: 'ON_PERMISSIVE' }).gtidStrictMode).toBe(false);
    expect(mysql.parseVariables({ ...base, gtid_strict_mode: 'OFF' }).gtidStrictMode).toBe(false);
    expect(mysql.parseVariables({ ...base, gtid_strict_mode: 'ON' }).superReadOnly).toBe(false);
    expect(mysql.parseVariables({ ...base, gtid_strict_mode: 'ON' }).gtid).toEqual({ executed: '' });
  });

  it('rejects missing or malformed required values', () => {
    expect(() => maria.parseVariables({ read_only: 0 })).toThrow(/server_id: missing value/);
    expect(() =>
      maria.parseVariables({ server_id: 1, read_only: 'maybe', log_bin: 1, log_slave_updates: 1, gtid_strict_mode: 1 }),
    ).toThrow("read_only: expected a boolean, got 'maybe'");
    expect(() =>
      mysql.parseVariables({ server_id: 1, read_only: 0, super_read_only: null, log_bin: 1, log_slave_updates: 1, gtid_strict_mode: 'ON' }),
    ).toThrow(/super_read_only: missing value/);
  });
});

// ---------------------------------------------------------------------------
describe('replica status', () => {
  it('chooses the statement by flavour and version', () => {
    expect(maria.replicaStatusQuery()).toBe('SHOW REPLICA STATUS');
    expect(mysql.replicaStatusQuery()).toBe('SHOW REPLICA STATUS');
    expect(mysql8022.replicaStatusQuery()).toBe('SHOW REPLICA STATUS');
    expect(mysql8021.replicaStatusQuery()).toBe('SHOW SLAVE STATUS');
  });

  it('returns null for an empty result (not a replica)', () => {
    expect(maria.parseReplicaStatus([])).toBeNull();
    expect(mysql.parseReplicaStatus([])).toBeNull();
  });

  it('parses a MariaDB 10.11 row', () => {
    const row = {
      Slave_IO_State: 'Waiting for master to send event',
      Master_Host: 'db1.example.internal',
      Master_User: 'repl',
      Master_Port: 3306,
      Connect_Retry: 10,
      Master_Log_File: 'mysql-bin.000012',
      Read_Master_Log_Pos: 4711,
      Relay_Log_File: 'relay-bin.000003',
      Relay_Log_Pos: 1000,
      Relay_Master_Log_File: 'mysql-bin.000012',
      Slave_IO_Running: 'Yes',
      Slave_SQL_Running: 'Yes',
      Last_Errno: 0,
      Last_Error: '',
      Exec_Master_Log_Pos: 4711,
      Seconds_Behind_Master: 3,
      Last_IO_Errno: 0,
      Last_IO_Error: '',
      Last_SQL_Errno: 0,
      Last_SQL_Error: '',
      Master_Server_Id: 1,
      Using_Gtid: 'Slave_Pos',
      Gtid_IO_Pos: '0-1-42,1-2-7',
      Parallel_Mode: 'optimistic',
      SQL_Delay: 0,
      SQL_Remaining_Delay: null,
      Slave_SQL_Running_State: 'Slave has read all relay log; waiting for more updates',
      Slave_DDL_Groups: 3,
    };
    expect(maria.parseReplicaStatus([row])).toEqual({
      sourceHost: 'db1.example.internal',
      sourcePort: 3306,
      ioRunning: 'Yes',
      sqlRunning: 'Yes',
      lagSeconds: 3,
      lastIoErrno: 0,
      lastIoError: '',
      lastSqlErrno: 0,
      lastSqlError: '',
      usingGtid: 'Slave_Pos',
      receivedGtid: '0-1-42,1-2-7',
      sqlState: 'Slave has read all relay log; waiting for more updates',
    });
  });

  it('parses a broken MariaDB replica (NULL lag, errors, string numbers)', () => {
    const s = maria.parseReplicaStatus([
      {
        Slave_IO_State: 'Reconnecting after a failed master event read',
        Master_Host: 'db1',
        Master_Port: '3306',
        Slave_IO_Running: 'Connecting',
        Slave_SQL_Running: 'No',
        Seconds_Behind_Master: null,
        Last_IO_Errno: '2003',
        Last_IO_Error: "error reconnecting to master 'repl@db1:3306' - retry-time: 10  maximum-retries: 100000  message: Can't connect to server on 'db1' (111)",
        Last_SQL_Errno: 1062,
        Last_SQL_Error: "Error 'Duplicate entry '1' for key 'PRIMARY'' on query.",
        Using_Gtid: 'Current_Pos',
        Gtid_IO_Pos: '0-1-40',
        Slave_SQL_Running_State: null,
      },
    ]);
    expect(s).not.toBeNull();
    expect(s!.ioRunning).toBe('Connecting');
    expect(s!.sqlRunning).toBe('No');
    expect(s!.lagSeconds).toBeNull();
    expect(s!.sourcePort).toBe(3306);
    expect(s!.lastIoErrno).toBe(2003);
    expect(s!.lastIoError).toMatch(/^error reconnecting to master/);
    expect(s!.lastSqlErrno).toBe(1062);
    expect(s!.usingGtid).toBe('Current_Pos');
    expect(s!.receivedGtid).toBe('0-1-40');
    expect(s!.sqlState).toBeNull();
  });

  it('maps MariaDB IO state "Preparing" to Connecting and rejects unknown states', () => {
    const base = { Master_Host: 'db1', Master_Port: 3306, Slave_SQL_Running: 'Yes' };
    expect(maria.parseReplicaStatus([{ ...base, Slave_IO_Running: 'Preparing' }])!.ioRunning).toBe('Connecting');
    expect(() => maria.parseReplicaStatus([{ ...base, Slave_IO_Running: 'Maybe' }])).toThrow(
      "IO_Running: unexpected value 'Maybe'",
    );
  });

  it('parses a MySQL 8.0.22+ row', () => {
    const row = {
      Replica_IO_State: 'Waiting for source to send event',
      Source_Host: '10.0.0.11',
      Source_User: 'repl',
      Source_Port: 3306,
      Connect_Retry: 60,
      Source_Log_File: 'binlog.000007',
      Read_Source_Log_Pos: 157,
      Relay_Log_File: 'relay.000002',
      Relay_Log_Pos: 373,
      Relay_Source_Log_File: 'binlog.000007',
      Replica_IO_Running: 'Yes',
      Replica_SQL_Running: 'Yes',
      Last_Errno: 0,
      Last_Error: '',
      Exec_Source_Log_Pos: 157,
      Seconds_Behind_Source: 0,
      Last_IO_Errno: 0,
      Last_IO_Error: '',
      Last_SQL_Errno: 0,
      Last_SQL_Error: '',
      Source_Server_Id: 1,
      Source_UUID: UUID_A,
      Replica_SQL_Running_State: 'Replica has read all relay log; waiting for more updates',
      Retrieved_Gtid_Set: `${UUID_A}:1-5:7`,
      Executed_Gtid_Set: `${UUID_A}:1-5:7,\n${UUID_B}:1-3`,
      Auto_Position: 1,
      Channel_Name: '',
    };
    expect(mysql.parseReplicaStatus([row])).toEqual({
      sourceHost: '10.0.0.11',
      sourcePort: 3306,
      ioRunning: 'Yes',
      sqlRunning: 'Yes',
      lagSeconds: 0,
      lastIoErrno: 0,
      lastIoError: '',
      lastSqlErrno: 0,
      lastSqlError: '',
      usingGtid: 'Auto_Position',
      receivedGtid: `${UUID_A}:1-5:7`,
      sqlState: 'Replica has read all relay log; waiting for more updates',
    });
  });

  it('parses a MySQL 8.0.21 row with Slave_/Master_ names', () => {
    const row = {
      Slave_IO_State: '',
      Master_Host: 'mysql-a',
      Master_Port: 3306,
      Slave_IO_Running: 'No',
      Slave_SQL_Running: 'No',
      Seconds_Behind_Master: null,
      Last_IO_Errno: 0,
      Last_IO_Error: '',
      Last_SQL_Errno: 0,
      Last_SQL_Error: '',
      Slave_SQL_Running_State: '',
      Retrieved_Gtid_Set: '',
      Executed_Gtid_Set: `${UUID_A}:1-10`,
      Auto_Position: 0,
      Channel_Name: '',
    };
    expect(mysql8021.parseReplicaStatus([row])).toEqual({
      sourceHost: 'mysql-a',
      sourcePort: 3306,
      ioRunning: 'No',
      sqlRunning: 'No',
      lagSeconds: null,
      lastIoErrno: 0,
      lastIoError: '',
      lastSqlErrno: 0,
      lastSqlError: '',
      usingGtid: 'No',
      receivedGtid: '',
      sqlState: '',
    });
  });

  it('picks the default channel from multi-channel MySQL output and rejects ambiguity', () => {
    const mk = (ch: string, host: string) => ({
      Source_Host: host,
      Source_Port: 3306,
      Replica_IO_Running: 'Yes',
      Replica_SQL_Running: 'Yes',
      Seconds_Behind_Source: 1,
      Channel_Name: ch,
    });
    expect(mysql.parseReplicaStatus([mk('', 'a'), mk('other', 'b')])!.sourceHost).toBe('a');
    expect(() => mysql.parseReplicaStatus([mk('x', 'a'), mk('y', 'b')])).toThrow(/multi-source replication is not supported/);
  });
});

// ---------------------------------------------------------------------------
describe('replication control statements', () => {
  it('setReadOnly on MariaDB uses read_only only', () => {
    expect(maria.setReadOnly(true)).toEqual(['SET GLOBAL read_only = ON']);
    expect(maria.setReadOnly(false)).toEqual(['SET GLOBAL read_only = OFF']);
  });
  it('setReadOnly on MySQL uses super_read_only', () => {
    expect(mysql.setReadOnly(true)).toEqual(['SET GLOBAL super_read_only = ON']);
    expect(mysql.setReadOnly(false)).toEqual(['SET GLOBAL super_read_only = OFF', 'SET GLOBAL read_only = OFF']);
  });
  it('stop/start/reset on MariaDB', () => {
    expect(maria.stopReplica()).toBe('STOP SLAVE');
    expect(maria.stopReplicaIoThread()).toBe('STOP SLAVE IO_THREAD');
    expect(maria.startReplica()).toBe('START SLAVE');
    expect(maria.resetReplicaAll()).toBe('RESET SLAVE ALL');
  });
  it('stop/start/reset on MySQL 8.0.22+', () => {
    for (const d of [mysql, mysql8022]) {
      expect(d.stopReplica()).toBe('STOP REPLICA');
      expect(d.stopReplicaIoThread()).toBe('STOP REPLICA IO_THREAD');
      expect(d.startReplica()).toBe('START REPLICA');
      expect(d.resetReplicaAll()).toBe('RESET REPLICA ALL');
    }
  });
  it('stop/start/reset on MySQL 8.0.21', () => {
    expect(mysql8021.stopReplica()).toBe('STOP SLAVE');
    expect(mysql8021.stopReplicaIoThread()).toBe('STOP SLAVE IO_THREAD');
    expect(mysql8021.startReplica()).toBe('START SLAVE');
    expect(mysql8021.resetReplicaAll()).toBe('RESET SLAVE ALL');
  });
});

// ---------------------------------------------------------------------------
describe('changePrimary', () => {
  const opts = { host: 'db1.example.internal', port: 3306, user: 'repl', password: "s3cr'et; DROP" };

  it('MariaDB: CHANGE MASTER TO with placeholders and slave_pos by default', () => {
    const r = maria.changePrimary(opts);
    expect(r.sql).toBe(
      'CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = 3306, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos',
    );
    expect(r.params).toEqual(['db1.example.internal', 'repl', "s3cr'et; DROP"]);
    expect(r.sql).not.toContain('s3cr');
    expect(r.sql).not.toContain('db1');
  });

  it('MariaDB: current_pos and connect retry', () => {
    const r = maria.changePrimary({ ...opts, port: 3307, connectRetrySeconds: 5, useGtid: 'current_pos' });
    expect(r.sql).toBe(
      'CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = 3307, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_CONNECT_RETRY = 5, MASTER_USE_GTID = current_pos',
    );
  });

  it('MySQL 8.0.23+: CHANGE REPLICATION SOURCE TO with auto-position', () => {
    const r = dialectFor('mysql', { major: 8, minor: 0, patch: 23 }).changePrimary({ ...opts, connectRetrySeconds: 10 });
    expect(r.sql).toBe(
      'CHANGE REPLICATION SOURCE TO SOURCE_HOST = ?, SOURCE_PORT = 3306, SOURCE_USER = ?, SOURCE_PASSWORD = ?, SOURCE_CONNECT_RETRY = 10, SOURCE_AUTO_POSITION = 1',
    );
    expect(r.params).toEqual(['db1.example.internal', 'repl', "s3cr'et; DROP"]);
    expect(mysql.changePrimary(opts).sql).toBe(
      'CHANGE REPLICATION SOURCE TO SOURCE_HOST = ?, SOURCE_PORT = 3306, SOURCE_USER = ?, SOURCE_PASSWORD = ?, SOURCE_AUTO_POSITION = 1',
    );
  });

  it('MySQL < 8.0.23: CHANGE MASTER TO MASTER_AUTO_POSITION=1', () => {
    const r = mysql8022.changePrimary(opts);
    expect(r.sql).toBe(
      'CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = 3306, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_AUTO_POSITION = 1',
    );
    expect(r.params).toEqual(['db1.example.internal', 'repl', "s3cr'et; DROP"]);
  });

  it('validates inlined values', () => {
    expect(() => maria.changePrimary({ ...opts, port: 3306.5 })).toThrow(/Invalid port 3306\.5/);
    expect(() => mysql.changePrimary({ ...opts, port: 0 })).toThrow(/Invalid port 0/);
    expect(() => mysql.changePrimary({ ...opts, port: '3306; DROP' as unknown as number })).toThrow(/Invalid port/);
    expect(() => maria.changePrimary({ ...opts, connectRetrySeconds: -1 })).toThrow(/Invalid connectRetrySeconds -1/);
    expect(() => maria.changePrimary({ ...opts, useGtid: 'no; DROP' as never })).toThrow(/Invalid useGtid/);
    expect(() => maria.changePrimary({ ...opts, host: '' })).toThrow(/Invalid host/);
  });
});

// ---------------------------------------------------------------------------
describe('waitForGtid', () => {
  it('MariaDB: MASTER_GTID_WAIT, 0 reached / -1 timeout', () => {
    const w = maria.waitForGtid(' 1-2-7,\n0-1-42 ', 30);
    expect(w.sql).toBe('SELECT MASTER_GTID_WAIT(?, ?) AS result');
    expect(w.params).toEqual(['0-1-42,1-2-7', 30]);
    expect(w.interpret({ result: 0 })).toBe('reached');
    expect(w.interpret({ result: '0' })).toBe('reached');
    expect(w.interpret({ result: -1 })).toBe('timeout');
    expect(w.interpret({ result: BigInt(-1) })).toBe('timeout');
    expect(() => w.interpret({ result: 1 })).toThrow(/MASTER_GTID_WAIT returned unexpected result 1/);
    expect(() => w.interpret({ result: null })).toThrow(/unexpected result null/);
  });

  it('MySQL: WAIT_FOR_EXECUTED_GTID_SET, 0 reached / 1 timeout', () => {
    const w = mysql.waitForGtid(`${UUID_A}:1-5:7,\n${UUID_B}:1-3`, 2.5);
    expect(w.sql).toBe('SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS result');
    expect(w.params).toEqual([`${UUID_A}:1-5:7,${UUID_B}:1-3`, 2.5]);
    expect(w.interpret({ result: 0 })).toBe('reached');
    expect(w.interpret({ result: 1 })).toBe('timeout');
    expect(w.interpret({ result: '1' })).toBe('timeout');
    expect(() => w.interpret({ result: -1 })).toThrow(/WAIT_FOR_EXECUTED_GTID_SET returned unexpected result -1/);
  });

  it('validates the position and timeout', () => {
    expect(() => maria.waitForGtid('0-1-x', 5)).toThrow("Invalid MariaDB GTID token '0-1-x'");
    expect(() => mysql.waitForGtid('0-1-42', 5)).toThrow("Invalid MySQL GTID set token '0-1-42'");
    expect(() => mysql.waitForGtid(`${UUID_A}:1`, 0)).toThrow(/Invalid timeoutSeconds 0/);
    expect(() => maria.waitForGtid('0-1-1', Number.POSITIVE_INFINITY)).toThrow(/Invalid timeoutSeconds/);
  });
});

describe('setGtidSlavePos', () => {
  it('MariaDB: SET GLOBAL gtid_slave_pos = ?', () => {
    expect(maria.setGtidSlavePos('1-2-7, 0-1-42')).toEqual({
      sql: 'SET GLOBAL gtid_slave_pos = ?',
      params: ['0-1-42,1-2-7'],
    });
    expect(maria.setGtidSlavePos('')).toEqual({ sql: 'SET GLOBAL gtid_slave_pos = ?', params: [''] });
    expect(() => maria.setGtidSlavePos("0-1-1'; DROP")).toThrow(/Invalid MariaDB GTID token/);
  });
  it('MySQL: not applicable', () => {
    expect(() => mysql.setGtidSlavePos('0-1-42')).toThrow(/auto-positioning.*gtid_executed/);
  });
});

// ---------------------------------------------------------------------------
describe('client sessions and kill', () => {
  const EXPECTED =
    'SELECT ID AS id, USER AS user, HOST AS host, COMMAND AS command, DB AS db, TIME AS time ' +
    'FROM information_schema.PROCESSLIST ' +
    "WHERE COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker') " +
    "AND USER NOT IN ('system user', 'event_scheduler') " +
    'AND ID <> CONNECTION_ID() ORDER BY ID';

  it('both flavours use information_schema.PROCESSLIST with the exclusions', () => {
    expect(maria.clientSessionsQuery()).toBe(EXPECTED);
    expect(mysql.clientSessionsQuery()).toBe(EXPECTED);
  });

  it('killConnection validates the id', () => {
    expect(maria.killConnection(42)).toBe('KILL CONNECTION 42');
    expect(mysql.killConnection(7)).toBe('KILL CONNECTION 7');
    expect(() => mysql.killConnection(1.5)).toThrow(/Invalid connection id 1\.5/);
    expect(() => maria.killConnection(0)).toThrow(/Invalid connection id 0/);
    expect(() => maria.killConnection('1; DROP' as unknown as number)).toThrow(/Invalid connection id/);
  });

  it('the binary log status: SHOW BINARY LOG STATUS from MySQL 8.2 (8.4 removed SHOW MASTER STATUS)', () => {
    expect(maria.binlogStatusQuery()).toBe('SHOW MASTER STATUS');
    expect(mysql.binlogStatusQuery()).toBe('SHOW MASTER STATUS');
    expect(dialectFor('mysql', { major: 8, minor: 4, patch: 3 }).binlogStatusQuery()).toBe('SHOW BINARY LOG STATUS');
  });

  it('resetting the binary logs: RESET MASTER, or RESET BINARY LOGS AND GTIDS from MySQL 8.2', () => {
    expect(maria.resetBinlogs()).toBe('RESET MASTER');
    expect(mysql.resetBinlogs()).toBe('RESET MASTER');
    expect(dialectFor('mysql', { major: 8, minor: 4, patch: 0 }).resetBinlogs()).toBe('RESET BINARY LOGS AND GTIDS');
    expect(maria.resetBinlogsTo(8)).toBe('RESET MASTER TO 8');
    expect(dialectFor('mysql', { major: 8, minor: 4, patch: 0 }).resetBinlogsTo(8)).toBe('RESET BINARY LOGS AND GTIDS TO 8');
    expect(() => maria.resetBinlogsTo(0)).toThrow(/binary log number/);
  });
});

// ---------------------------------------------------------------------------
describe('MariaDB GTID helpers', () => {
  it('parses lists, tolerating whitespace and newlines', () => {
    expect(parseMariaGtidList('')).toEqual([]);
    expect(parseMariaGtidList('  \n ')).toEqual([]);
    expect(parseMariaGtidList('0-1-42,1-2-7')).toEqual([
      { domain: 0, server: 1, seq: 42 },
      { domain: 1, server: 2, seq: 7 },
    ]);
    expect(parseMariaGtidList(' 0-1-42 ,\n 1-2-7\n')).toEqual([
      { domain: 0, server: 1, seq: 42 },
      { domain: 1, server: 2, seq: 7 },
    ]);
  });

  it('throws naming the bad token', () => {
    expect(() => parseMariaGtidList('0-1-42,1-2')).toThrow("Invalid MariaDB GTID token '1-2'");
    expect(() => parseMariaGtidList('0-1-42,abc')).toThrow("Invalid MariaDB GTID token 'abc'");
    expect(() => parseMariaGtidList('0-1-42,,1-2-7')).toThrow("Invalid MariaDB GTID token ''");
    expect(() => parseMariaGtidList(`${UUID_A}:1-5`)).toThrow(/Invalid MariaDB GTID token/);
    expect(() => parseMariaGtidList('0-1-42,0-2-43')).toThrow("Duplicate domain 0 in MariaDB GTID token '0-2-43'");
    expect(() => parseMariaGtidList('0-1-99999999999999999999')).toThrow(/out of range/);
  });

  it('formats sorted by domain without mutating input', () => {
    const list = [
      { domain: 2, server: 3, seq: 9 },
      { domain: 0, server: 1, seq: 42 },
    ];
    expect(formatMariaGtidList(list)).toBe('0-1-42,2-3-9');
    expect(list[0]!.domain).toBe(2);
    expect(formatMariaGtidList([])).toBe('');
    expect(formatMariaGtidList(parseMariaGtidList('1-2-7,0-1-42'))).toBe('0-1-42,1-2-7');
  });

  it('compares per domain', () => {
    expect(compareMariaGtid('0-1-42,1-2-7', '0-1-42,1-2-7')).toEqual({
      aAhead: [],
      bAhead: [],
      conflicting: [],
      equal: true,
    });
    expect(compareMariaGtid('0-1-43,1-2-7', '0-1-42,1-2-9')).toEqual({
      aAhead: [0],
      bAhead: [1],
      conflicting: [],
      equal: false,
    });
    expect(compareMariaGtid('0-1-42', '0-1-42,2-3-1')).toEqual({
      aAhead: [],
      bAhead: [2],
      conflicting: [],
      equal: false,
    });
    expect(compareMariaGtid('1-2-7,0-1-50', '')).toEqual({ aAhead: [0, 1], bAhead: [], conflicting: [], equal: false });
    expect(compareMariaGtid('', '')).toEqual({ aAhead: [], bAhead: [], conflicting: [], equal: true });
  });

  it('flags same seq from different servers as conflicting', () => {
    expect(compareMariaGtid('0-1-100', '0-2-100')).toEqual({
      aAhead: [],
      bAhead: [],
      conflicting: [0],
      equal: false,
    });
  });

  it('finds errant domains', () => {
    expect(mariaErrantDomains('0-1-42,1-2-7', '0-1-42,1-2-7')).toEqual([]);
    expect(mariaErrantDomains('0-1-40', '0-1-42')).toEqual([]);
    expect(mariaErrantDomains('0-1-43,1-2-7', '0-1-42,1-2-9')).toEqual([{ domain: 0, candidateSeq: 43, primarySeq: 42 }]);
    expect(mariaErrantDomains('0-1-42,5-3-2', '0-1-42')).toEqual([{ domain: 5, candidateSeq: 2, primarySeq: null }]);
    expect(mariaErrantDomains('0-2-42', '0-1-42')).toEqual([{ domain: 0, candidateSeq: 42, primarySeq: 42 }]);
    expect(mariaErrantDomains('', '0-1-42')).toEqual([]);
    expect(mariaErrantDomains('3-1-0', '')).toEqual([]);
    expect(() => mariaErrantDomains('0-1-x', '0-1-1')).toThrow("Invalid MariaDB GTID token '0-1-x'");
  });
});

describe('normalizeMysqlGtidSet', () => {
  it('accepts sets (incl. tagged GTIDs) and strips whitespace', () => {
    expect(normalizeMysqlGtidSet('')).toBe('');
    expect(normalizeMysqlGtidSet(`${UUID_A}:1-5:7,\n ${UUID_B}:1-3`)).toBe(`${UUID_A}:1-5:7,${UUID_B}:1-3`);
    expect(normalizeMysqlGtidSet(`${UUID_A}:mytag:1-3`)).toBe(`${UUID_A}:mytag:1-3`);
  });
  it('rejects malformed tokens naming them', () => {
    expect(() => normalizeMysqlGtidSet(`${UUID_A}`)).toThrow(`Invalid MySQL GTID set token '${UUID_A}'`);
    expect(() => normalizeMysqlGtidSet(`${UUID_A}:1-5,zzz:1`)).toThrow("Invalid MySQL GTID set token 'zzz:1'");
    expect(() => normalizeMysqlGtidSet(`${UUID_A}:1'`)).toThrow(/Invalid MySQL GTID set token/);
  });
});
