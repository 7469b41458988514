/**
 * Moving writes to a new primary, past the point of no return: the operator's traffic hooks and
 * the built-in writer endpoint row.
 *
 * The hooks (proxies, DNS) do not need the control database, so they never wait for it: the
 * writer endpoint row is handed to a background writer that retries until the control database
 * answers and writes it as soon as it does; the run cannot succeed before it is written (`record`
 * waits for it, see `written`). Hooks are not assumed idempotent: one that succeeded (or failed
 * with onFailure: continue) is not run again when the step is retried or resumed.
 */
import type { Duration } from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { HookEnv, HookResult } from '../../activities/traffic';
import { OrderedSender } from './queue';
import type { RollForward } from './rollForward';

const act = wf.proxyActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 4 },
});
// The row must arrive: retried without limit while the control database is down (as the audit is).
const untilWritten = wf.proxyActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
});

type EndpointRow = Parameters<Activities['setWriterEndpoint']>[0];
type EndpointWritten = Awaited<ReturnType<Activities['setWriterEndpoint']>>;

/** The writer endpoint row, written in the background as soon as the control database answers. */
export class WriterEndpointRow {
  private result: EndpointWritten | undefined;
  private readonly writer = new OrderedSender<EndpointRow>(async ([row]) => {
    this.result = await untilWritten.setWriterEndpoint.executeWithOptions({ summary: `writer endpoint: ${row!.cluster} → ${row!.instance}` }, [row!]);
  }, 1);

  set(row: EndpointRow): void {
    this.writer.push(row);
  }

  get current(): EndpointWritten | undefined {
    return this.result;
  }

  /** The row once written; a retryable failure if it is not within `timeout` (the control database is down). */
  async written(timeout: Duration): Promise<EndpointWritten> {
    if (!(await wf.condition(() => this.result !== undefined, timeout))) {
      throw ApplicationFailure.retryable('the writer endpoint row is not written yet: the control database does not answer', 'ControlDatabaseDown');
    }
    return this.result!;
  }
}

/** `switch traffic`: the endpoint row queued, then the traffic hooks, retried as a roll-forward step. */
export async function switchTraffic(forward: RollForward, endpoint: WriterEndpointRow, o: { row: EndpointRow; env: HookEnv }): Promise<void> {
  endpoint.set(o.row);
  const done = new Map<string, HookResult>();
  await forward.step(
    'switch traffic',
    async () => {
      try {
        const skip = [...done.values()].filter((h) => h.ok || h.onFailure === 'continue').map((h) => h.name);
        for (const h of await act.runHooks({ cluster: o.row.cluster, kind: 'traffic', env: o.env, skip })) done.set(h.name, h);
      } catch (err) {
        for (const h of hookResultsOf(err)) done.set(h.name, h);
        throw err;
      }
      // Usually written by now; if the control database is down the run goes on without it.
      const written = await endpoint.written('2s').catch(() => undefined);
      return { hooks: [...done.values()], written };
    },
    {
      note: (r) =>
        `${r.written ? `writer endpoint generation ${r.written.generation}` : `writer endpoint → ${o.row.instance} queued until the control database answers`}` +
        `${r.hooks.length ? `, hooks: ${r.hooks.map((h) => `${h.name} ${h.ok ? 'ok' : 'FAILED'}`).join(', ')}` : ''}`,
      // Their output, redacted of the worker's secrets by the activity, for the audit.
      detail: (r) => ({ hooks: r.hooks }),
    },
  );
}

/** The results a failed hook run reports with its failure (the hooks that ran, the failed one last). */
function hookResultsOf(err: unknown): HookResult[] {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure) || cause.type !== 'HookFailed') return [];
  return ((cause.details?.[0] as { results?: HookResult[] } | undefined)?.results ?? []);
}
