/**
 * What `runbook consistency …` does: check that copies hold the same rows (replicas against their
 * primary at one position, or two sites across regions), and repair them after approval; and
 * `runbook consistency-report <workflow>`: every difference a run found, its plan and what was
 * repaired, from the control database. Every input is bounded here, before anything starts (and
 * again by the workflow itself).
 */
import { configPathFromEnv, getCluster, getInstance, loadConfig } from '../../config/load';
import { checkIdsOf, conflictsOf, differencesOf, repairsOf, withControl } from '../../adapters/control/store';
import { consistencyOptionProblems, describeDifferences, type ConsistencyOptions } from '../../core/consistency';
import { showTuple, reviveTuple } from '../../core/rowDigest';
import { identityProblem, incidentIdProblem, INPUT_LIMITS, textProblem } from '../../core/inputs';
import type { consistency, ConsistencyInput, ConsistencyResult } from '../../workflows/consistency';
import { printJson } from './output';
import { cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient } from './common';

/** The command's options: the workflow's own (src/core/consistency.ts) as typed, and the CLI's. */
export interface ConsistencyCliOptions extends Omit<ConsistencyOptions, 'replicas' | 'between' | 'batchChunks' | 'batchesPerRun'> {
  replica?: string[];
  all?: boolean;
  source?: string;
  target?: string;
  dryRun?: boolean;
  reason?: string;
  as: string;
  incident?: string;
  detach?: boolean;
  json?: boolean;
}

/** The workflow's options from the command line, refused in one line when out of bounds. */
export function consistencyOptionsOf(cluster: string, o: ConsistencyCliOptions): ConsistencyOptions {
  if (o.replica?.length && o.all) throw new Error('--replica and --all: name replicas, or compare all of them');
  if ((o.source === undefined) !== (o.target === undefined)) throw new Error('across regions name both instances: --source and --target');
  if (o.source !== undefined && (o.replica?.length || o.all)) throw new Error('--source/--target compare two sites; --replica/--all compare replicas with their primary: one or the other');
  const options: ConsistencyOptions = {
    ...(o.replica?.length ? { replicas: o.replica } : {}),
    ...(o.source !== undefined ? { between: { source: o.source, target: o.target! } } : {}),
    schema: o.schema, table: o.table, chunkRows: o.chunkRows, chunkSeconds: o.chunkSeconds,
    repair: o.repair, policy: o.policy, applyOn: o.applyOn, maxRepairRows: o.maxRepairRows, maxThreadsRunning: o.maxThreadsRunning,
  };
  const problem = [
    ...consistencyOptionProblems(options),
    identityProblem('--as', o.as, { required: true }),
    textProblem('--reason', o.reason, INPUT_LIMITS.reason),
    incidentIdProblem('--incident', o.incident),
    o.dryRun && !o.repair ? '--dry-run goes with --repair (a check alone changes nothing)' : undefined,
  ].find(Boolean);
  if (problem) throw new Error(problem.replace(/^chunkRows/, '--chunk-rows').replace(/^chunkSeconds/, '--chunk-seconds').replace(/^maxRepairRows/, '--max-repair-rows').replace(/^maxThreadsRunning/, '--max-threads-running'));
  const config = loadConfig(configPathFromEnv());
  getCluster(config, cluster);
  for (const name of [...(o.replica ?? []), ...(o.source !== undefined ? [o.source, o.target!] : [])]) {
    const [c, i] = name.includes('/') ? (name.split('/') as [string, string]) : [cluster, name];
    getInstance(config, c, i); // an unknown instance is refused before anything starts
  }
  return options;
}

/** `runbook consistency <cluster>`: start a check (or a repair) and, unless detached, follow it. */
export async function consistencyCommand(cluster: string, o: ConsistencyCliOptions): Promise<number> {
  const options = consistencyOptionsOf(cluster, o);
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, cluster, o.as);
  const incidentId = o.incident ?? newIncidentId();
  const reason = o.reason ?? (o.repair ? 'consistency repair' : 'consistency check');
  const input: ConsistencyInput = { cluster, ...options, requester, reason, incidentId, dryRun: o.dryRun, configFingerprint };
  return withClient((client) =>
    startIncidentRunbook<typeof consistency>(client, {
      type: 'consistency',
      workflowId: `consistency-${cluster}-${incidentId}`,
      input,
      cluster,
      incidentId,
      summary: `consistency ${cluster}${options.between ? ` ${options.between.source} ↔ ${options.between.target}` : ''}${o.repair ? ` (repair${o.dryRun ? ', dry run' : ''})` : ''} by ${requester}`,
      options: { reason, as: requester, detach: o.detach, json: o.json },
      print: printResult,
    }),
  );
}

/** `runbook consistency-report <workflow>`: the run's differences, plan and repairs. */
export async function consistencyReport(workflowId: string, o: { json?: boolean }): Promise<void> {
  const problem = textProblem('workflow id', workflowId, INPUT_LIMITS.workflowId, { required: true });
  if (problem) throw new Error(problem);
  const report = await withControl(loadConfig(configPathFromEnv()), async (c) => {
    const [checkId] = await checkIdsOf(c, workflowId);
    if (!checkId) throw new Error(`no consistency run ${workflowId} in the control database`);
    return { workflowId, checkId, differences: await differencesOf(c, checkId), conflicts: await conflictsOf(c, checkId), repairs: await repairsOf(c, checkId) };
  });
  if (o.json) return printJson(report);
  console.log(`${workflowId}: ${report.differences.length} difference(s), ${report.conflicts.length} queued for a person, ${report.repairs.length} row(s) repaired`);
  for (const d of report.differences) {
    const plan = d.decision ? ` → ${d.decision === 'queue' ? 'QUEUED' : d.writes!.map((w) => `${w.op} on ${w.instance}${w.logged ? ' (logged)' : ' (unlogged, held)'}`).join('; ')}: ${d.reason}` : '';
    console.log(`  ${d.table} ${showTuple(reviveTuple(d.key))} chunk ${d.chunkIndex}: ${d.kind}${d.columns.length ? ` (${d.columns.join(', ')})` : ''} on ${d.instance}${plan}`);
  }
  for (const r of report.repairs) console.log(`  repaired ${r.table} ${JSON.stringify(r.key_value)} on ${r.written_on} (${r.policy}, ${r.status})`);
}

function printResult(r: ConsistencyResult): void {
  console.log(`\n${r.status}: ${r.report.comparedAt}`);
  for (const t of r.report.tables) {
    console.log(t.unverifiable ? `  ${t.table}: UNVERIFIABLE: ${t.unverifiable}` : `  ${t.table}: ${t.rowsCompared} row(s), ${t.chunks} chunk(s): ${describeDifferences(t)}`);
    for (const d of t.examples.slice(0, 10)) console.log(`    ${showTuple(reviveTuple(d.key))} ${d.kind}${d.columns.length ? ` (${d.columns.join(', ')})` : ''} on ${d.instance}, chunk ${d.chunk.index}`);
  }
  if (r.report.throttledMs) console.log(`  waited ${Math.round(r.report.throttledMs / 1000)} s for lag or load: ${r.report.throttleReasons.join('; ')}`);
  if (r.plan) {
    console.log(`repair plan: ${r.plan.rowsToWrite} row write(s), ${r.plan.queued} for a person`);
    for (const l of r.plan.lines) console.log(`  ${l}`);
  }
  for (const x of r.repairs ?? []) console.log(`repaired ${x.table}: ${x.written} row(s)${x.already ? `, ${x.already} already in place` : ''}${x.left.length ? `; left: ${x.left.map((l) => `${l.key} on ${l.instance} (${l.why})`).join('; ')}` : ''}`);
  for (const x of r.recheck ?? []) console.log(`re-check ${x.table}: ${x.differences.length} difference(s)`);
  if (r.queued) console.log(`${r.queued} difference(s) queued in consistency_conflict`);
}
