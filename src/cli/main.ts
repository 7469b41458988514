/**
 * `runbook …`: the operator's command line. Human output by default, `--json` for scripts; every
 * error is one line on stderr and a non-zero exit.
 */
import { Command, CommanderError, Option } from 'commander';
import { configPathFromEnv, getCluster, loadConfig, type RunbookConfig } from '../config/load';
import { configFingerprint } from '../config/fingerprint';
import { failoverHistory, insertLogEvent, listSyncStatus, MAX_PAGE, MAX_PAGE_SIZE, migrateControl, withControl } from '../control/store';
import { incidentIdProblem, INPUT_LIMITS, nameProblem, textProblem } from '../shared/inputs';
import { probeTopology } from '../mysql/probe';
import { Sandbox } from '../sandbox/sandbox';
import { startDevServer, stopDevServer } from '../temporal/devServer';
import { runDrill, temporalStateDir } from './drill';
import { backupCommand, decide, pruneRestores, resume, showStatus, startFailover, startFlashback, startRestore, verifiedCliUser } from './runbooks';
import { printHistory, printJson, printSandboxStatus, printSyncStatus, printTopology } from './output';
import { registerConsistencyCommands } from './consistency';

const program = new Command('runbook')
  .description('Incident runbooks for MySQL/MariaDB high availability, on Temporal')
  .option('-c, --config <path>', 'cluster config file or directory (default: $RUNBOOK_CONFIG or runbooks/sandbox.yaml)')
  .showHelpAfterError('(run `runbook --help` for usage)')
  .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') })
  .exitOverride();

// --config reaches every part of the CLI (and a worker it starts) through RUNBOOK_CONFIG.
program.hook('preAction', () => {
  if (program.opts().config) process.env.RUNBOOK_CONFIG = program.opts().config;
});

function config(): RunbookConfig {
  return loadConfig(program.opts().config ?? configPathFromEnv());
}

const json = new Option('--json', 'machine-readable output');
/** A whole number from 1 to `max`, read digit by digit (Number('1e3') or 20 nines would slip through). */
const positiveInt = (name: string, max: number) => (v: string) => {
  const n = /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got "${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`);
  return n;
};
const PORT_MAX = 65535;

const sandbox = program.command('sandbox').description('the local multi-region MariaDB sandbox');
sandbox
  .command('up')
  .description('create (if needed) and start every instance, wire GTID replication, migrate the control schema')
  .action(async () => {
    const cfg = config();
    const sb = new Sandbox(cfg, (l) => console.log(l));
    await sb.up();
    await migrateControl(cfg);
    printSandboxStatus(sb);
  });
sandbox
  .command('down')
  .description('stop every instance (keeps the datadirs)')
  .action(async () => {
    const sb = new Sandbox(config(), (l) => console.log(l));
    await sb.down();
    console.log('sandbox stopped');
  });
sandbox
  .command('destroy')
  .description('stop every instance and delete the datadirs')
  .action(async () => {
    const cfg = config();
    await new Sandbox(cfg, (l) => console.log(l)).destroy();
    console.log(`sandbox destroyed (${cfg.sandboxDir})`);
  });
sandbox
  .command('status')
  .addOption(json)
  .action((opts) => {
    const sb = new Sandbox(config());
    if (opts.json) printJson(sb.status());
    else printSandboxStatus(sb);
  });

program
  .command('topology <cluster>')
  .description('probe every instance and show the live topology')
  .addOption(json)
  .action(async (cluster: string, opts) => {
    const cfg = config();
    getCluster(cfg, cluster);
    const topology = await probeTopology(cfg, cluster);
    if (opts.json) printJson(topology);
    else printTopology(topology);
  });

program
  .command('log')
  .description('failover_log history, newest first')
  .option('--cluster <name>')
  .option('--incident <id>')
  .option('--workflow <id>')
  .option('--page <n>', 'page number, from 1', positiveInt('--page', MAX_PAGE), 1)
  .option('--page-size <n>', 'rows per page', positiveInt('--page-size', MAX_PAGE_SIZE), 20)
  .addOption(json)
  .action(async (opts) => {
    const problem = [nameProblem('--cluster', opts.cluster), incidentIdProblem('--incident', opts.incident), textProblem('--workflow', opts.workflow, INPUT_LIMITS.workflowId)].find(Boolean);
    if (problem) throw new Error(problem);
    const rows = await withControl(config(), (c) =>
      failoverHistory(c, { cluster: opts.cluster, incidentId: opts.incident, workflowId: opts.workflow, page: opts.page, pageSize: opts.pageSize }),
    );
    if (opts.json) printJson(rows);
    else printHistory(rows, opts.page);
  });

program
  .command('sync-status')
  .description('replication state per cluster and region')
  .option('--cluster <name>')
  .addOption(json)
  .action(async (opts) => {
    const rows = await withControl(config(), (c) => listSyncStatus(c, opts.cluster));
    if (opts.json) printJson(rows);
    else printSyncStatus(rows);
  });

const temporal = program.command('temporal').description('the embedded Temporal dev server (with its Web UI)');
temporal
  .command('up')
  .option('--port <n>', 'gRPC port (default: 7233 if free, else a free one)', positiveInt('--port', PORT_MAX))
  .option('--ui-port <n>', 'Web UI port (default: 8233 if free, else a free one)', positiveInt('--ui-port', PORT_MAX))
  .action(async (opts) => {
    const s = await startDevServer({ stateDir: temporalStateDir(config()), port: opts.port, uiPort: opts.uiPort, preferredPort: 7233, preferredUiPort: 8233, persistent: true });
    console.log(`Temporal dev server ${s.started ? 'started' : 'already running'}: ${s.address}, Web UI ${s.uiUrl}`);
    // Workers and the CLI default to localhost:7233: on another port they must be told.
    if (!s.address.endsWith(':7233')) console.log(`not on the default port: export TEMPORAL_ADDRESS=${s.address} for the worker and the CLI`);
  });
temporal.command('down').action(async () => {
  const pid = await stopDevServer(temporalStateDir(config()));
  console.log(pid ? `Temporal dev server stopped (pid ${pid})` : 'Temporal dev server was not running');
});

program
  .command('worker')
  .description('run the worker (Temporal from TEMPORAL_ADDRESS etc.; see README)')
  .action(async () => {
    const { runWorkerProcess } = await import('../worker/main');
    await runWorkerProcess();
  });

program
  .command('drill')
  .description('the main job: Temporal dev server + sandbox up, a health-check runbook, its audit trail')
  .action(async () => {
    await runDrill(config());
  });

program
  .command('failover <cluster>')
  .description('planned switchover (default) or emergency failover; follows the run until it ends')
  .option('--to <target>', 'region or instance to promote (default: the most advanced eligible replica)')
  .option('--emergency', 'the primary is down: emergency failover')
  .option('--dry-run', 'preflight only: print the plan, change nothing')
  .requiredOption('--reason <text>', 'why (goes to the audit log)')
  .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
  .option('--incident <id>', 'incident id (default: generated); the workflow id is failover-<cluster>-<incident>')
  .option('--detach', 'start it and return at once')
  .addOption(json)
  .action(async (cluster: string, opts) => {
    getCluster(config(), cluster); // an unknown cluster is refused before anything starts
    const code = await startFailover({ cluster, ...opts });
    process.exitCode = code;
  });

for (const decision of ['approve', 'reject'] as const) {
  program
    .command(`${decision} <workflowId>`)
    .description(`${decision} a runbook waiting for approval`)
    .option('--as <name>', "who you are: must be the person your OS login is (people[].login), unless the cluster allows declared identities")
    .option('--comment <text>')
    .action(async (workflowId: string, opts) => {
      process.exitCode = await decide(workflowId, decision, opts.as, opts.comment);
    });
}

program
  .command('resume <workflowId>')
  .description('carry on with a run that waits in needs_attention (past its point of no return), once the cause is fixed')
  .requiredOption('--as <name>', 'who resumes it (logged)')
  .option('--comment <text>', 'what was fixed (logged)')
  .action(async (workflowId: string, opts) => {
    process.exitCode = await resume(workflowId, opts.as, opts.comment);
  });

program
  .command('status <workflowId>')
  .description('state of a runbook: steps, plan, pending approval, outcome')
  .addOption(json)
  .action(async (workflowId: string, opts) => {
    process.exitCode = await showStatus(workflowId, Boolean(opts.json));
  });

program
  .command('backup <cluster>')
  .description('take a backup (logical, physical or both) and archive the binlogs; or schedule it')
  .addOption(new Option('--kind <kind>', 'what to take').choices(['logical', 'physical', 'both']).default('both'))
  .option('--instance <name>', 'back up this instance (default: a healthy replica, else the primary)')
  .requiredOption('--as <name>', 'who asks (logged)')
  .option('--schedule <cron>', 'create a Temporal Schedule instead, e.g. "0 3 * * *" (UTC)')
  .action(async (cluster: string, opts) => {
    getCluster(config(), cluster);
    process.exitCode = await backupCommand({ cluster, kind: opts.kind, instance: opts.instance, as: opts.as, schedule: opts.schedule });
  });

program
  .command('restore <cluster>')
  .description('point-in-time recovery into a recovery instance: just before a bad event (optionally skipping it), to a GTID or to a time')
  .option('--table <db.table>', 'the bad event touched this table')
  .option('--statement <regex>', "the bad event's statement matches this (case-insensitive, RE2 syntax, the whole statement), e.g. 'DROP TABLE'")
  .option('--not-statement <regex>', "and does not match this, e.g. --statement '^UPDATE' --not-statement 'WHERE'")
  .option('--from <time>', 'the bad event happened at or after this RFC 3339 time (with an offset: Z or +08:00)')
  .option('--to <time>', 'the bad event happened at or before this RFC 3339 time (with an offset)')
  .option('--event <gtid>', 'the bad event is this transaction: confirms one of the candidates a search listed')
  .option('--gtid <gtid>', 'recover through this transaction instead')
  .option('--at <time>', 'recover through the last transaction at or before this RFC 3339 time (with an offset) instead')
  .option('--confirm-late', "accept an --at after the end of the archived binlogs (the archive stops short of it: recovery ends at the archive's end)")
  .option('--skip', 'skip the bad event and replay everything after it')
  .addOption(new Option('--backup-kind <kind>', 'restore only from this kind of backup').choices(['logical', 'physical']))
  .addOption(new Option('--replay <method>', 'how to apply the binlogs').choices(['sql-thread', 'pipe']).default('sql-thread'))
  .addOption(new Option('--cutover <mode>', 'after verification and approval: copy the damaged tables back, or promote the recovery host').choices(['none', 'copy-tables', 'promote']).default('none'))
  .option('--recover-on <name>', "restore into the cluster's configured recovery host (wiped first) instead of a scratch instance on this host")
  .option('--compare <db.table...>', 'more tables to compare with production')
  .option('--reason <text>', 'why (goes to the audit log); required unless --prune')
  .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
  .option('--incident <id>', 'incident id (default: generated); the workflow id is restore-<cluster>-<incident>')
  .option('--dry-run', 'locate the target, choose the backup, check the binlogs; change nothing')
  .option('--prune', "instead: delete what earlier restores kept (recovery datadirs, staging schemas) older than --older-than days")
  .option('--older-than <days>', 'with --prune: age in days (default 7)', (v: string) => {
    if (!/^\d{1,4}$/.test(v)) throw new Error(`--older-than must be a whole number of days, got "${v}"`);
    return Number(v);
  })
  .option('--detach', 'start it and return at once')
  .addOption(json)
  .action(async (cluster: string, opts) => {
    const c = getCluster(config(), cluster);
    if (opts.prune) {
      process.exitCode = await pruneRestores({ cluster, olderThanDays: opts.olderThan ?? 7, as: opts.as, dryRun: opts.dryRun, json: opts.json });
      return;
    }
    if (opts.olderThan !== undefined) throw new Error('--older-than goes with --prune');
    if (!opts.reason) throw new Error("required option '--reason <text>' not specified");
    if (opts.recoverOn && c.recovery?.name !== opts.recoverOn) {
      throw new Error(`--recover-on: ${cluster} has no recovery host "${opts.recoverOn}"; ${c.recovery ? `its recovery host is ${c.recovery.name}` : `configure clusters.${cluster}.recovery`}`);
    }
    process.exitCode = await startRestore({ cluster, ...opts });
  });

program
  .command('flashback <cluster>')
  .description('undo one UPDATE/DELETE by mariadb-binlog --flashback on the primary, after approval (refused for DDL, statement format, partial images, later writes to the same rows)')
  .option('--table <db.table>', 'the bad event touched this table')
  .option('--statement <regex>', "the bad event's statement matches this (case-insensitive, RE2 syntax, the whole statement), e.g. '^UPDATE'")
  .option('--not-statement <regex>', "and does not match this, e.g. --statement '^UPDATE' --not-statement 'WHERE'")
  .option('--from <time>', 'the bad event happened at or after this RFC 3339 time (with an offset: Z or +08:00)')
  .option('--to <time>', 'the bad event happened at or before this RFC 3339 time (with an offset)')
  .option('--event <gtid>', 'the bad event is this transaction: confirms one of the candidates a search listed')
  .requiredOption('--reason <text>', 'why (goes to the audit log)')
  .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
  .option('--incident <id>', 'incident id (default: generated); the workflow id is flashback-<cluster>-<incident>')
  .option('--dry-run', 'locate the event and check flashback is possible; change nothing')
  .option('--detach', 'start it and return at once')
  .addOption(json)
  .action(async (cluster: string, opts) => {
    getCluster(config(), cluster);
    process.exitCode = await startFlashback({ cluster, ...opts });
  });

registerConsistencyCommands(program);

/** Refuse to release a lock whose holding workflow is still running (or cannot be asked about). */
async function refuseWhileRunning(lock: string, workflowId: string): Promise<void> {
  const { connectClient } = await import('../temporal/client');
  const { runState } = await import('../temporal/runState');
  const cannotTell = (err: Error) => new Error(`cannot tell whether ${workflowId}, which holds ${lock}'s lock, is over (Temporal: ${err.message.split('\n')[0]}); --force releases it anyway`);
  const client = await connectClient().catch((err: Error) => Promise.reject(cannotTell(err)));
  const run = await runState(client, workflowId)
    .catch((err: Error) => Promise.reject(cannotTell(err)))
    .finally(() => client.connection.close());
  if (run.status === 'RUNNING') {
    throw new Error(`${lock}'s lock is held by ${workflowId} (${run.type}), which is still running: cancel it, or terminate it in the Temporal UI, first; --force releases the lock anyway`);
  }
}

program
  .command('unlock <cluster>')
  .description("release a cluster's runbook lock left by a run that is over (terminated, lost); <cluster>/<recovery host> releases a recovery host's")
  .requiredOption('--as <name>', 'who releases it (logged)')
  .option('--force', 'release it without asking Temporal whether the holding run is over')
  .action(async (cluster: string, opts) => {
    const cfg = config();
    const [name, host] = cluster.split('/');
    const c = getCluster(cfg, name!);
    if (host !== undefined && c.recovery?.name !== host) throw new Error(`${name} has no recovery host "${host}"`);
    const operator = verifiedCliUser(cfg, name!, opts.as);
    const holder = await withControl(cfg, async (c) => {
      const [rows] = await c.query('SELECT workflow_id FROM runbook_lock WHERE cluster = ?', [cluster]);
      const row = (rows as { workflow_id: string }[])[0];
      if (!row) return undefined;
      // The lock is what keeps two runbooks off one cluster: a run that is still going keeps it.
      if (!opts.force) await refuseWhileRunning(cluster, row.workflow_id);
      await c.query('DELETE FROM runbook_lock WHERE cluster = ? AND workflow_id = ?', [cluster, row.workflow_id]);
      await insertLogEvent(c, { status: 'unlocked', runbook: 'cli', cluster, step: 'cluster lock released by hand', operator, workflowId: row.workflow_id, detail: { heldBy: row.workflow_id } });
      return row.workflow_id;
    });
    console.log(holder ? `released ${cluster}'s lock (held by ${holder})` : `${cluster} is not locked`);
  });

const archive = program.command('archive').description("continuous binlog archiving of a cluster's primary (what point-in-time recovery replays)");
archive
  .command('start <cluster>')
  .description('archive the primary\'s binlogs as it writes them, following it across failovers (one per cluster; already running is fine)')
  .requiredOption('--as <name>', 'who starts it (logged)')
  .action(async (cluster: string, opts) => {
    getCluster(config(), cluster);
    const { startArchive } = await import('./archive');
    const r = await startArchive(cluster, opts.as);
    console.log(r.started ? `started ${r.workflowId}` : `${r.workflowId} is already running`);
  });
archive
  .command('stop <cluster>')
  .description('stop continuous archiving (what was archived stays)')
  .requiredOption('--as <name>', 'who stops it (logged)')
  .action(async (cluster: string) => {
    getCluster(config(), cluster);
    const { stopArchive } = await import('./archive');
    console.log((await stopArchive(cluster)) ? `stopping binlog archiving of ${cluster}` : `binlog archiving of ${cluster} is not running`);
  });
archive
  .command('status <cluster>')
  .description('how far the archive is behind the primary')
  .addOption(json)
  .action(async (cluster: string, opts) => {
    getCluster(config(), cluster);
    const { archiveStatus, printArchiveStatus } = await import('./archive');
    printArchiveStatus(await archiveStatus(cluster), Boolean(opts.json));
  });

program
  .command('serve')
  .description('the approval endpoint: Slack interactivity (POST /slack/interactions) and email approval links (/approve/…)')
  .option('--port <n>', 'port to listen on', positiveInt('--port', PORT_MAX), Number(process.env.RUNBOOK_HTTP_PORT ?? 8787))
  .option('--host <address>', 'address to bind', process.env.RUNBOOK_HTTP_HOST ?? '127.0.0.1')
  .action(async (opts) => {
    const { serveApprovals } = await import('../server/serve');
    await serveApprovals(config(), opts.port, opts.host);
  });

program
  .command('config')
  .description('validate the cluster configuration')
  .action(() => {
    const cfg = config();
    console.log(`ok: ${cfg.files.join(', ')}: clusters ${Object.keys(cfg.clusters).join(', ') || '(none)'}; fingerprint ${configFingerprint(cfg)} (the worker prints its own at start)`);
  });

// `runbook log | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode); // commander already printed one line
    const message = err instanceof Error ? err.message : String(err);
    console.error(`runbook: ${message.split('\n')[0]}`);
    process.exit(1);
  }
}

await main();
