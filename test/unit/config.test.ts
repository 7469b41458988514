/** Config validation: every error names the file, the field path and what was expected. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ConfigError, getCluster, loadConfig, resolveCredential } from '../../src/config/load';

const shipped = YAML.parse(readFileSync('runbooks/sandbox.yaml', 'utf8'));

/** The shipped sandbox config with one change applied, written to its own file. */
function variant(change: (doc: any) => void): string {
  const doc = structuredClone(shipped);
  doc.envFile = resolve('runbooks/sandbox.env');
  change(doc);
  const file = join(mkdtempSync(join(tmpdir(), 'runbook-config-')), 'orders.yaml');
  writeFileSync(file, YAML.stringify(doc));
  return file;
}

function errorOf(file: string): string {
  try {
    loadConfig(file, {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('cluster config', () => {
  it('loads the shipped sandbox: cluster orders, primary in region-a, two replicas', () => {
    const config = loadConfig('runbooks/sandbox.yaml', {});
    const orders = getCluster(config, 'orders');
    expect(orders.instances.map((i) => [i.name, i.region, i.role, i.promotion])).toEqual([
      ['orders-a', 'region-a', 'primary', 'prefer'],
      ['orders-b', 'region-b', 'replica', 'prefer'],
      ['orders-c', 'region-c', 'replica', 'neutral'],
    ]);
    expect(orders.approval.failover!.emergency).toMatchObject({ mode: 'required', approvers: ['alice', 'bob'], fourEyes: true });
    expect(orders.thresholds).toEqual({ maxLagSeconds: 5, catchUpTimeoutSeconds: 30, probeTimeoutSeconds: 3, rollForwardMinutes: 10, rollForwardRemindMinutes: 1, confirmProbes: 3, confirmIntervalMs: 1000, monitorConfirmationSeconds: 10, replicaGraceSeconds: 15, verifyTimeoutSeconds: 30, replayTimeoutSeconds: 21600 });
  });

  it('a missing field names its path and what was expected', () => {
    const file = variant((d) => delete d.clusters.orders.instances[1].port);
    expect(errorOf(file)).toBe(`${file}: clusters.orders.instances[1].port: expected number, received undefined`);
  });

  it('an unknown region names the instance and the known regions', () => {
    const file = variant((d) => (d.clusters.orders.instances[2].region = 'region-z'));
    expect(errorOf(file)).toBe(`${file}: clusters.orders.instances[2].region: unknown region "region-z", expected one of region-a, region-b, region-c`);
  });

  it('a duplicate port names both users of it', () => {
    const file = variant((d) => (d.clusters.orders.instances[2].port = d.clusters.orders.instances[0].port));
    expect(errorOf(file)).toBe(`${file}: clusters.orders.instances[2].port: duplicate port 23101 on 127.0.0.1, already used by orders/orders-a`);
  });

  it('a port shared with the control database is a duplicate too', () => {
    const file = variant((d) => (d.clusters.orders.instances[1].port = d.control.port));
    expect(errorOf(file)).toMatch(/instances\[1\]\.port: duplicate port 23100 on 127.0.0.1, already used by control/);
  });

  it('a recovery host on a production address, or named like an instance, is refused: a restore wipes it', () => {
    const onPrimary = variant((d) => (d.clusters.orders.recovery.port = 23101));
    expect(errorOf(onPrimary)).toBe(`${onPrimary}: clusters.orders.recovery.port: 127.0.0.1:23101 is orders/orders-a; a restore would wipe it: a recovery host must be a separate server`);
    const named = variant((d) => (d.clusters.orders.recovery.name = 'orders-b'));
    expect(errorOf(named)).toBe(`${named}: clusters.orders.recovery.name: "orders-b" is an instance of the cluster; a recovery host is a separate server, never production`);
    const unknownRegion = variant((d) => (d.clusters.orders.recovery.region = 'region-z'));
    expect(errorOf(unknownRegion)).toMatch(/clusters\.orders\.recovery\.region: unknown region "region-z"/);
  });

  it('a literal password is refused, and says what to write instead', () => {
    const file = variant((d) => (d.clusters.orders.credentials.admin = { user: 'root', password: 'hunter2' }));
    const message = errorOf(file);
    expect(message).toContain(`${file}: clusters.orders.credentials.admin.password: a literal password is not allowed; use passwordEnv: <ENV_VAR_NAME>`);
    expect(message).not.toContain('hunter2');
  });

  it('a secret pasted into passwordEnv is refused without echoing it', () => {
    const file = variant((d) => (d.control.credentials.passwordEnv = 's3cret!'));
    const message = errorOf(file);
    expect(message).toMatch(/control\.credentials\.passwordEnv: .*NAME of an environment variable/);
  });

  it('more than one primary, or an unknown field, is reported with all other errors at once', () => {
    const file = variant((d) => {
      d.clusters.orders.instances[1].role = 'primary';
      d.clusters.orders.thresholds.maxLag = 3;
    });
    const message = errorOf(file);
    expect(message).toContain('clusters.orders.thresholds: unknown field(s) "maxLag"');
    expect(message.split('; ').length).toBeGreaterThanOrEqual(1);
    const two = variant((d) => (d.clusters.orders.instances[1].role = 'primary'));
    expect(errorOf(two)).toBe(`${two}: clusters.orders.instances: expected exactly one instance with role: primary, found 2`);
  });

  it('a reseed.physical template: argv lists with only the known placeholders and no literal secret', () => {
    expect(getCluster(loadConfig(variant(() => {}), {}), 'orders').reseed?.physical?.targetCommand).toContain('{targetDatadir}');
    const unknown = variant((d) => (d.clusters.orders.reseed.physical.sourceCommand = ['ssh', '{sourceHots}', 'mariadb-backup']));
    expect(errorOf(unknown)).toContain('clusters.orders.reseed.physical.sourceCommand[1]: only the placeholders {cluster}, {sourceInstance}');
    const secret = variant((d) => (d.clusters.orders.reseed.physical.sourceCommand = ['ssh', '{sourceHost}', 'mariadb-backup', '--backup', '--password=hunter2']));
    expect(errorOf(secret)).toBe(`${secret}: clusters.orders.reseed.physical.sourceCommand: holds a literal secret (--password …); name a defaults file the tool reads instead`);
    const shell = variant((d) => (d.clusters.orders.reseed.physical.targetCommand = 'ssh db2 sh -c "mbstream -x"'));
    expect(errorOf(shell)).toContain('clusters.orders.reseed.physical.targetCommand: expected array');
  });

  it('a literal secret in a hook command, or a user or password in a host, is refused without echoing it', () => {
    const hook = variant((d) => (d.clusters.orders.traffic.hooks = [{ name: 'proxysql', command: 'mysql -h proxy -uadmin -phunter2 -e "LOAD MYSQL SERVERS TO RUNTIME"' }]));
    expect(errorOf(hook)).toBe(`${hook}: clusters.orders.traffic.hooks[0].command: holds a literal secret (-p…); read it from an environment variable instead`);
    const fencing = variant((d) => (d.clusters.orders.fencing = { hooks: [{ name: 'ipmi', command: 'IPMI_PASSWORD=hunter2 ipmitool power off' }] }));
    expect(errorOf(fencing)).toBe(`${fencing}: clusters.orders.fencing.hooks[0].command: holds a literal secret (IPMI_PASSWORD=…); read it from an environment variable instead`);
    const url = variant((d) => (d.clusters.orders.traffic.hooks = [{ name: 'lb', command: 'curl -X POST https://ops:hunter2@lb.example/switch' }]));
    expect(errorOf(url)).toContain('traffic.hooks[0].command: holds a literal secret (user:…@ in a URL)');
    const host = variant((d) => (d.clusters.orders.instances[1].host = 'root:hunter2@db2'));
    expect(errorOf(host)).toBe(`${host}: clusters.orders.instances[1].host: a host name or IP address (no user, password, port or URL)`);
    const port = variant((d) => (d.control.host = 'db9:3306'));
    expect(errorOf(port)).toBe(`${port}: control.host: a host name or IP address without a port (the port has its own field)`);
    for (const f of [hook, fencing, url, host]) expect(errorOf(f)).not.toContain('hunter2');
    // A variable holding it is what to write instead, and passes.
    const fine = variant((d) => (d.clusters.orders.traffic.hooks = [{ name: 'proxysql', command: 'MYSQL_PWD="$PROXYSQL_PASSWORD" mysql -h proxy -uadmin -e "LOAD"' }]));
    expect(() => loadConfig(fine, {})).not.toThrow();
  });

  it('the same server written two ways is one server: localhost beside 127.0.0.1 is a duplicate', () => {
    const file = variant((d) => {
      d.clusters.orders.instances[2].host = 'localhost';
      d.clusters.orders.instances[2].port = d.clusters.orders.instances[0].port;
    });
    expect(errorOf(file)).toBe(`${file}: clusters.orders.instances[2].port: duplicate port 23101 on localhost, already used by orders/orders-a`);
    const v6 = variant((d) => (d.clusters.orders.recovery = { ...d.clusters.orders.recovery, host: '::1', port: d.control.port }));
    expect(errorOf(v6)).toBe(`${v6}: clusters.orders.recovery.port: ::1:23100 is control; a restore would wipe it: a recovery host must be a separate server`);
  });

  it('one Slack user, address or login is one person', () => {
    const file = variant((d) => {
      d.clusters.orders.people[1].slack = 'U0ALICE';
      d.clusters.orders.people[2].email = 'ALICE@example.com';
      d.clusters.orders.people[0].login = 'ops';
      d.clusters.orders.people[2].login = 'ops';
    });
    expect(errorOf(file).split('; ')).toEqual([
      `${file}: clusters.orders.people[1].slack: "U0ALICE" is also people[0]'s: each person needs their own`,
      `${file}: clusters.orders.people[2].email: "ALICE@example.com" is also people[0]'s: each person needs their own`,
      `${file}: clusters.orders.people[2].login: "ops" is also people[0]'s: each person needs their own`,
    ]);
  });

  it('a name the audit trail cannot hold is refused: people and approvers fit failover_log.operator', () => {
    const file = variant((d) => {
      d.clusters.orders.people[0].name = 'a'.repeat(65);
      d.clusters.orders.approval.default.default.approvers = ['b'.repeat(129)];
    });
    const message = errorOf(file);
    expect(message).toContain('clusters.orders.people[0].name: at most 64 characters (failover_log.operator)');
    expect(message).toContain('clusters.orders.approval.default.default.approvers[0]: at most 64 characters (failover_log.operator)');
  });

  it('approval policy values are checked', () => {
    const file = variant((d) => (d.clusters.orders.approval.failover.planned.mode = 'sometimes'));
    expect(errorOf(file)).toMatch(/clusters\.orders\.approval\.failover\.planned\.mode: .*"auto"\|"required"/);
  });

  it('an unset password variable is named when the credential is resolved', () => {
    expect(() => resolveCredential({ user: 'repl', passwordEnv: 'NOPE_NOT_SET' }, {})).toThrow(
      'environment variable NOPE_NOT_SET (password of MySQL user "repl") is not set',
    );
    expect(resolveCredential({ user: 'repl', passwordEnv: 'X' }, { X: 'y' })).toEqual({ user: 'repl', password: 'y' });
  });

  it('an unknown cluster lists the known ones', () => {
    expect(() => getCluster(loadConfig('runbooks/sandbox.yaml', {}), 'billing')).toThrow('unknown cluster "billing"; known: orders');
  });

  it('a missing file is one clear line', () => {
    expect(() => loadConfig('/nonexistent/x.yaml', {})).toThrow('/nonexistent/x.yaml: no such config file or directory');
  });
});

describe('docker-compose.yml', () => {
  it('is valid YAML whose worker config exists and validates', () => {
    const compose = YAML.parse(readFileSync('docker-compose.yml', 'utf8'));
    expect(Object.keys(compose.services)).toEqual(['temporal', 'mysql-primary', 'mysql-replica', 'mysql-recovery', 'control', 'worker', 'approvals']);
    const configVar = (compose.services.worker.environment as string[]).find((e) => e.startsWith('RUNBOOK_CONFIG='))!;
    const path = configVar.split('=')[1]!.replace('/app/', '');
    const config = loadConfig(path, {});
    expect(getCluster(config, 'orders').instances.map((i) => i.host)).toEqual(['mysql-primary', 'mysql-replica']);
    // The recovery host is its own service, read-only as a restore requires.
    expect(getCluster(config, 'orders').recovery?.host).toBe('mysql-recovery');
    expect(compose.services['mysql-recovery'].command).toContain('--read-only=ON');
    // The search attributes the engine upserts are registered by the compose dev server too.
    const attrs = (compose.services.temporal.command as string[]).filter((a) => a.endsWith('=Keyword'));
    expect(attrs.sort()).toEqual(['Cluster=Keyword', 'IncidentId=Keyword', 'Operator=Keyword', 'RunbookStatus=Keyword', 'RunbookType=Keyword']);
  });
});
