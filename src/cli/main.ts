/**
 * `runbook …`: the operator's command line. Human output by default, `--json` for scripts; every
 * error is one line on stderr and a non-zero exit.
 */
import { Command, CommanderError } from 'commander';
import { getCluster, type RunbookConfig } from '../config/load';
import { configFingerprint } from '../config/fingerprint';
import { failoverHistory, listSyncStatus, MAX_PAGE, MAX_PAGE_SIZE, migrateControl, withControl } from '../adapters/control/store';
import { incidentIdProblem, INPUT_LIMITS, nameProblem, textProblem } from '../core/inputs';
import { probeTopology } from '../adapters/mysql/probe';
import { Sandbox } from '../adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer } from '../adapters/temporal/devServer';
import { runDrill, temporalStateDir } from './drill';
import { cliContext, PORT_MAX, positiveInt, type CliContext } from './context';
import { registerRunCommands } from './runs';
import { printHistory, printJson, printSandboxStatus, printSyncStatus, printTopology } from './output';

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

const ctx = cliContext(program);
const config = (): RunbookConfig => ctx.config();

const json = ctx.json();

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

/**
 * Run the program: its commands first (the run-level ones here, each runbook's from the registry,
 * handed in by src/main.ts so this folder never depends on the registry that lists it).
 */
export async function runCli(runbookCommands: ((ctx: CliContext) => void)[]): Promise<void> {
  try {
    registerRunCommands(ctx);
    for (const register of runbookCommands) register(ctx);
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode); // commander already printed one line
    const message = err instanceof Error ? err.message : String(err);
    console.error(`runbook: ${message.split('\n')[0]}`);
    process.exit(1);
  }
}
