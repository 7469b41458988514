/** The runbook worker: every workflow and activity, with the step-envelope interceptors. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, NativeConnection, Worker, type ActivityInterceptorsFactory, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities';
import { LogNotifier, type Notifier } from '../activities/notify';
import { EmailNotifier } from '../adapters/notify/email';
import { SlackNotifier } from '../adapters/notify/slack';
import type { RunbookConfig } from '../config/load';
import { stepEnvelopeInterceptor } from './stepEnvelope';

/**
 * The source tree the worker bundles its workflows from. Found by walking up from this module,
 * which is src/worker/ when run from source and dist/ when run from the CLI's build.
 */
function sourceRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'src', 'workflows', 'index.ts'))) return join(dir, 'src');
    if (dirname(dir) === dir) throw new Error(`cannot find src/workflows/index.ts above ${fileURLToPath(import.meta.url)}`);
  }
}

export const WORKFLOWS_PATH = join(sourceRoot(), 'workflows', 'index.ts');
export const WORKFLOW_INTERCEPTORS_PATH = join(sourceRoot(), 'workflows', 'shared', 'interceptors.ts');

export interface RunbookWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  config: RunbookConfig;
  /** A module exporting the workflows (tests add their own fixture workflows to the real ones). */
  workflowsPath?: string;
  /** A prebuilt bundle (tests bundle once and start several workers). */
  workflowBundle?: WorkflowBundleWithSourceMap;
  /** Activities beyond the engine's own (test fixtures). */
  extraActivities?: Record<string, (...args: never[]) => Promise<unknown>>;
  identity?: string;
  /** Where notifications go (default: the log only). */
  notifiers?: Notifier[];
  /** More activity interceptors (tests use one to crash the worker at a chosen point). */
  activityInterceptors?: ActivityInterceptorsFactory[];
}

/** Bundle workflow code once, with the interceptors it needs. */
export function bundleWorkflows(workflowsPath = WORKFLOWS_PATH): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath, workflowInterceptorModules: [WORKFLOW_INTERCEPTORS_PATH], logger: quietBundlerLogger });
}

const quietBundlerLogger = { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} } as never;

export async function createRunbookWorker(opts: RunbookWorkerOptions): Promise<Worker> {
  const workflows = opts.workflowBundle
    ? { workflowBundle: opts.workflowBundle }
    : { workflowsPath: opts.workflowsPath ?? WORKFLOWS_PATH };
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...workflows,
    activities: { ...createActivities({ config: opts.config, notifiers: opts.notifiers }), ...opts.extraActivities },
    interceptors: {
      activity: [stepEnvelopeInterceptor, ...(opts.activityInterceptors ?? [])],
      workflowModules: opts.workflowBundle ? [] : [WORKFLOW_INTERCEPTORS_PATH],
    },
    // In-flight activities get this long to finish on SIGTERM before the worker gives up on them;
    // Temporal retries them elsewhere, and every activity is idempotent.
    shutdownGraceTime: '10s',
    // If this worker dies, its cached workflows' next tasks wait this long on its sticky queue
    // before any other worker may take them (default 10 s): mid-incident, seconds matter.
    stickyQueueScheduleToStartTimeout: '3s',
  });
}

/** The log always; Slack and email when their settings are in the environment (see README). */
export function notifiersFromEnv(config: RunbookConfig, env: NodeJS.ProcessEnv = process.env): Notifier[] {
  const candidates: (Notifier | undefined)[] = [new LogNotifier(), SlackNotifier.fromEnv(config, env), EmailNotifier.fromEnv(config, env)];
  return candidates.filter((n): n is Notifier => n !== undefined);
}
