/**
 * `runbook …`: the operator's command line. Human output by default, `--json` for scripts; every
 * error is one line on stderr and a non-zero exit. Only the command definitions load at start; what
 * a command does (actions/) is imported when it runs, so `--help` and `status` answer at once.
 */
import { Command, CommanderError } from 'commander';
import { cliContext, PORT_MAX, positiveInt, type CliContext } from './context';
import { registerRunCommands } from './runs';
import { LOG_PAGES } from '../core/inputs';

/**
 * Stack traces of a long-running process (the worker's go to the Temporal UI with each failure)
 * point into src/, not the build: the chunks loaded from here on carry their source maps.
 */
const longRunning = () => process.setSourceMapsEnabled(true);

/** The built-in commands' implementations, loaded when one runs. */
const builtin = () => import('./actions/builtin');

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
const config = () => ctx.config();

const json = ctx.json();

const sandbox = program.command('sandbox').description('the local multi-region MariaDB sandbox');
sandbox
  .command('up')
  .description('create (if needed) and start every instance, wire GTID replication, migrate the control schema')
  .action(async () => (await builtin()).sandboxUp(await config()));
sandbox
  .command('down')
  .description('stop every instance (keeps the datadirs)')
  .action(async () => (await builtin()).sandboxDown(await config()));
sandbox
  .command('destroy')
  .description('stop every instance and delete the datadirs')
  .action(async () => (await builtin()).sandboxDestroy(await config()));
sandbox
  .command('status')
  .addOption(json)
  .action(async (opts) => (await builtin()).sandboxStatus(await config(), Boolean(opts.json)));

program
  .command('topology <cluster>')
  .description('probe every instance and show the live topology')
  .addOption(json)
  .action(async (cluster: string, opts) => (await builtin()).showTopology(await config(), cluster, Boolean(opts.json)));

program
  .command('log')
  .description('failover_log history, newest first')
  .option('--cluster <name>')
  .option('--incident <id>')
  .option('--workflow <id>')
  .option('--page <n>', 'page number, from 1', positiveInt('--page', LOG_PAGES.page), 1)
  .option('--page-size <n>', 'rows per page', positiveInt('--page-size', LOG_PAGES.pageSize), 20)
  .option('--wide', 'every row with every column (default: one line per step, 120 columns)')
  .addOption(json)
  .action(async (opts) => (await import('./actions/codeCache')).runQuickCommand('log', () => import('./actions/log'), (log) => log.showLog(opts)));

program
  .command('sync-status')
  .description('replication state per cluster and region')
  .option('--cluster <name>')
  .addOption(json)
  .action(async (opts) => (await builtin()).showSyncStatus(await config(), opts.cluster, Boolean(opts.json)));

const temporal = program.command('temporal').description('the embedded Temporal dev server (with its Web UI)');
temporal
  .command('up')
  .option('--port <n>', 'gRPC port (default: 7233 if free, else a free one)', positiveInt('--port', PORT_MAX))
  .option('--ui-port <n>', 'Web UI port (default: 8233 if free, else a free one)', positiveInt('--ui-port', PORT_MAX))
  .action(async (opts) => (await builtin()).temporalUp(await config(), opts.port, opts.uiPort));
temporal.command('down').action(async () => (await builtin()).temporalDown(await config()));

program
  .command('worker')
  .description('run the worker (Temporal from TEMPORAL_ADDRESS etc.; see README)')
  .action(async () => {
    longRunning();
    const { runWorkerProcess } = await import('../worker/main');
    await runWorkerProcess();
  });

program
  .command('drill')
  .description('the main job: Temporal dev server + sandbox up, a health-check runbook, its audit trail')
  .option('--wide', 'audit trails with every row and column (default: one line per step, 120 columns)')
  .action(async (opts) => {
    longRunning();
    await (await import('./actions/drill')).runDrill(await config(), { wide: Boolean(opts.wide) });
  });

program
  .command('serve')
  .description('the approval endpoint: Slack interactivity (POST /slack/interactions) and email approval links (/approve/…)')
  .option('--port <n>', 'port to listen on', positiveInt('--port', PORT_MAX), Number(process.env.RUNBOOK_HTTP_PORT ?? 8787))
  .option('--host <address>', 'address to bind', process.env.RUNBOOK_HTTP_HOST ?? '127.0.0.1')
  .action(async (opts) => {
    longRunning();
    const { serveApprovals } = await import('../server/serve');
    await serveApprovals(await config(), opts.port, opts.host);
  });

program
  .command('config')
  .description('validate the cluster configuration')
  .action(async () => (await builtin()).checkConfig(await config()));

// `runbook log | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/**
 * Run the program: its commands first (the run-level ones here, each runbook's from the registry,
 * handed in by src/main.ts so this folder never depends on the registry that lists it).
 */
/** What the CLI needs of a runbook's entry in the registry (src/registry.ts). */
export interface RunbookCommands {
  commands: string[];
  cli?: () => Promise<(ctx: CliContext) => void>;
}

/**
 * The command word of an argv (after node and the script): the first argument that is not a global
 * option (`-c`/`--config` take a value).
 */
export function commandWord(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-c' || a === '--config') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/**
 * Which runbooks' commands to load: none for a built-in command (status, log, approve … are run
 * dozens of times in an incident: loading every runbook's definitions was a fifth of their start),
 * the one that owns the command, else all (help, or a word commander must call unknown).
 */
export function runbooksToLoad<R extends RunbookCommands>(runbooks: R[], word: string | undefined, builtIns: string[]): R[] {
  const withCli = runbooks.filter((r) => r.cli);
  if (word === undefined) return withCli;
  if (builtIns.includes(word)) return [];
  const owners = withCli.filter((r) => r.commands.includes(word));
  return owners.length ? owners : withCli;
}

export async function runCli(runbooks: RunbookCommands[]): Promise<void> {
  try {
    registerRunCommands(ctx);
    const builtIns = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);
    const load = runbooksToLoad(runbooks, commandWord(process.argv.slice(2)), builtIns);
    for (const register of await Promise.all(load.map((r) => r.cli!()))) register(ctx);
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode); // commander already printed one line
    const message = err instanceof Error ? err.message : String(err);
    console.error(`runbook: ${message.split('\n')[0]}`);
    process.exit(1);
  }
}
