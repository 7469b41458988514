/** `runbook failback`: bring an old primary back (and optionally switch back to it). */
import { getInstance } from '../../config/load';
import { failbackInputProblems, type FailbackMethodOption } from '../../core/failback';
import type { failback, FailbackInput } from '../../workflows/failback';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type IncidentCliOptions } from './common';

export interface FailbackCliOptions extends IncidentCliOptions {
  instance: string;
  switchBack?: boolean;
  method?: FailbackMethodOption;
}

/** Start a failback and (unless detached) follow it; returns the exit code. */
export async function startFailback(o: FailbackCliOptions): Promise<number> {
  const incidentId = o.incident ?? newIncidentId();
  checkIncidentOptions(o, failbackInputProblems({ instance: o.instance, method: o.method, incidentId }).map((p) => `--${p.replace(/^incidentId/, 'incident')}`));
  const { config, configFingerprint } = cliConfig();
  getInstance(config, o.cluster, o.instance); // an unknown instance is refused before anything starts
  const requester = verifiedCliUser(config, o.cluster, o.as);
  return withClient(async (c) => {
    const input: FailbackInput = { cluster: o.cluster, instance: o.instance, switchBack: o.switchBack, method: o.method, requester, reason: o.reason, incidentId, dryRun: o.dryRun, configFingerprint };
    return startIncidentRunbook<typeof failback>(c, {
      type: 'failback',
      workflowId: `failback-${o.cluster}-${incidentId}`,
      input,
      cluster: o.cluster,
      incidentId,
      summary: `failback ${o.cluster} ${o.instance}${o.switchBack ? ' (switch back)' : ''}${o.dryRun ? ' (dry run)' : ''} by ${requester}`,
      options: { ...o, as: requester },
      print: (r) => {
        console.log(`\n${r.status}: ${o.instance} by ${r.method} (${r.why})`);
        console.log(`errant: ${r.analysis.errant.length} transaction(s)${r.analysis.export ? `, exported to ${r.analysis.export.dir}` : ''}`);
        for (const e of r.analysis.errant.slice(0, 20)) console.log(`  ${e.gtid} ${e.tables.join(', ')}: ${e.statement}`);
        if (r.consistency) console.log(`consistency: ${r.consistency.differences} difference(s) in ${r.consistency.rowsCompared} row(s) (${r.consistency.workflowId})`);
        console.log(`primary: ${r.primaryBefore}${r.primaryAfter !== r.primaryBefore ? ` → ${r.primaryAfter}` : ''}`);
      },
    });
  });
}
