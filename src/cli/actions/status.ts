/**
 * `runbook status <id>`: an engineer runs it dozens of times in an incident, so it loads only what
 * it uses (issue #18). Temporal is asked without its client where that can be exact
 * (adapters/temporal/quickReads.ts); whatever that path cannot do, Temporal's client does, loaded
 * then (statusClient.ts, handed in: this file is also built on its own, see scripts/build.mjs):
 * the output is the same either way (test/integration/cli.test.ts compares them).
 */
import { failoverHistory, withControl } from '../../adapters/control/store';
import { quickReader, QuickReadUnavailable } from '../../adapters/temporal/quickReads';
import { temporalSettings } from '../../adapters/temporal/settings';
import { configPathFromEnv, loadConfig } from '../../config/load';
import type { ApprovalState, Attention, RunbookState } from '../../core/runbookDefinitions';
import { RUNBOOK_STATE_QUERY } from '../../core/stateQuery';
import { printHistory, printJson } from './output';
import { askRunbookState, describeApproval, describeAttention } from './runView';

/** What status reads of a run in Temporal. */
export interface RunReader {
  describe(): Promise<{ runId: string; status: string }>;
  state(): Promise<RunbookState>;
  close(): Promise<void>;
}

/** The reads through Temporal's client (statusClient.ts), connected when first needed. */
export type ClientReader = (workflowId: string) => Promise<RunReader>;

/**
 * Without Temporal's client where it can (a plaintext connection), each read handed to the client
 * when the quick one cannot make it exactly; the client is connected once, when first needed.
 */
function reader(workflowId: string, clientReader: ClientReader): RunReader {
  const quick = quickReader(temporalSettings());
  let client: Promise<RunReader> | undefined;
  const full = () => (client ??= clientReader(workflowId));
  if (!quick) return { describe: async () => (await full()).describe(), state: async () => (await full()).state(), close: async () => (await full()).close() };
  const orClient = <T>(read: () => Promise<T>, viaClient: (r: RunReader) => Promise<T>) =>
    read().catch(async (err) => {
      if (err instanceof QuickReadUnavailable) return viaClient(await full());
      throw err;
    });
  return {
    describe: () => orClient(() => quick.describe(workflowId), (r) => r.describe()),
    state: () => orClient(() => askRunbookState(async (deadline) => (await quick.query(workflowId, RUNBOOK_STATE_QUERY, deadline)) as RunbookState), (r) => r.state()),
    close: async () => {
      quick.close();
      await client?.then((r) => r.close(), () => undefined); // a client that could not connect has said so
    },
  };
}

/** The first line of an error, for a one-line report. */
const oneLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/**
 * The state of a run: Temporal's status, the run's own (query), its failover_log trail. What could
 * not be read is said, one line each on stderr, and makes the exit code 1: an unanswered query or
 * an unreachable control database is never shown as "no state, empty history".
 */
export async function showStatus(workflowId: string, json: boolean, wide: boolean, clientReader: ClientReader): Promise<number> {
  // The three reads go out at once (an engineer runs this dozens of times in an incident): the
  // trail from the control database, Temporal's description of the run, and the run's own state.
  const trail = withControl(loadConfig(configPathFromEnv()), (conn) => failoverHistory(conn, { workflowId, pageSize: 200 })).catch((err: unknown) => err as Error);
  const run = reader(workflowId, clientReader);
  try {
    const query = run.state().catch((err: unknown) => err as Error);
    const description = await run.describe();
    const [answer, read] = [await query, await trail];
    const errors: string[] = [];
    const state = answer instanceof Error ? void errors.push(`cannot query the run's state: ${oneLine(answer)}`) : answer;
    const rows = read instanceof Error ? void errors.push(`cannot read failover_log from the control database: ${oneLine(read)}`) : read;
    if (json) {
      printJson({ workflowId, runId: description.runId, status: description.status, state: state ?? null, log: rows ?? null, errors });
    } else {
      console.log(`${workflowId}: ${description.status}${state ? ` (${state.status}${state.currentStep ? `, now: ${state.currentStep}` : ''})` : ''}`);
      const approval = state?.details.approval as ApprovalState | undefined;
      if (approval?.status === 'pending') console.log(describeApproval(workflowId, approval, state!.details.plan));
      const attention = state?.details.attention as Attention | undefined;
      if (attention) console.log(describeAttention(workflowId, attention));
      if (state?.auditPending) console.log(`${state.auditPending} audit row(s) waiting for the control database`);
      for (const p of state?.auditProblems ?? []) console.log(`audit row #${p.stepSeq} ${p.step} (${p.status}) ${p.problem === 'truncated' ? 'stored cut to fit' : 'NOT stored as written'}: ${p.detail}`);
      if (rows) printHistory(rows.reverse(), 1, wide);
    }
    for (const e of errors) console.error(`runbook: ${e}`);
    return errors.length ? 1 : 0;
  } finally {
    await run.close();
  }
}
