/**
 * What `runbook revoke` does: contain a grant mistake on every server (issue #14), or `--undo` an
 * incident. Every input is bounded here before anything starts (src/core/inputs.ts), and again by
 * the workflow before its first step.
 */
import { readFileSync, statSync } from 'node:fs';
import YAML from 'yaml';
import { parsePointInTime } from '../../core/coverage';
import type { DeclaredAccount } from '../../core/grants';
import { incidentIdProblem } from '../../core/inputs';
import { revokeInputProblems } from '../../core/grants';
import type { revoke, RevokeInput, revokeUndo, RevokeUndoInput } from '../../workflows/revoke';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type IncidentCliOptions } from './common';

export interface RevokeCliOptions extends IncidentCliOptions {
  object?: string;
  accounts?: string;
  lock?: boolean;
  grantsFile?: string;
  since?: string;
  until?: string;
  undo?: string;
}

/** A grants file is small: a pasted dump is refused before it is parsed. */
const GRANTS_FILE_MAX_BYTES = 256 * 1024;

/**
 * `accounts: [{ account: user@host, grants: ['SELECT ON db.t', …], roles: [...], defaultRole: r }]`:
 * the exact grants those accounts should end with.
 */
export function readGrantsFile(path: string): DeclaredAccount[] {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw new Error(`--grants-file ${path}: ${(err as Error).message}`);
  }
  if (size > GRANTS_FILE_MAX_BYTES) throw new Error(`--grants-file ${path} is ${size} bytes; at most ${GRANTS_FILE_MAX_BYTES}`);
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(path, 'utf8'), { maxAliasCount: 10 });
  } catch (err) {
    throw new Error(`--grants-file ${path}: not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const accounts = (doc as { accounts?: unknown })?.accounts;
  if (!Array.isArray(accounts)) throw new Error(`--grants-file ${path}: expected "accounts:" with a list of { account: user@host, grants: [...] }`);
  return accounts as DeclaredAccount[];
}

/** The revoke input the options describe, every bound checked; throws one line. */
export function revokeInputOf(o: RevokeCliOptions, requester: string, incidentId: string, nowMs = Date.now()): RevokeInput {
  const objects = (o.object ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  const since = o.since === undefined ? undefined : parsePointInTime(o.since, '--since');
  const until = o.until === undefined ? undefined : parsePointInTime(o.until, '--until');
  if (since !== undefined && since > nowMs) throw new Error('--since is in the future');
  const declared = o.grantsFile ? readGrantsFile(o.grantsFile) : undefined;
  const input: RevokeInput = { cluster: o.cluster, objects, accounts: o.accounts, lock: Boolean(o.lock), declared, since, until, requester, reason: o.reason, incidentId, dryRun: o.dryRun };
  const problem = revokeInputProblems(input).find(Boolean);
  if (problem) throw new Error(problem.replace(/^objects/, '--object').replace(/^accounts/, '--accounts').replace(/^declared/, '--grants-file'));
  return input;
}

export async function startRevoke(o: RevokeCliOptions): Promise<number> {
  checkIncidentOptions(o);
  if (o.undo !== undefined) return startRevokeUndo(o);
  if (!o.object) throw new Error("required option '--object <db.table,...>' not specified");
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  const incidentId = o.incident ?? newIncidentId();
  const input: RevokeInput = { ...revokeInputOf(o, requester, incidentId), configFingerprint };
  return withClient((c) =>
    startIncidentRunbook<typeof revoke>(c, {
      type: 'revoke',
      workflowId: `revoke-${o.cluster}-${incidentId}`,
      input,
      cluster: o.cluster,
      incidentId,
      summary: `revoke ${o.cluster}: ${input.objects.join(', ')}${o.accounts ? ` from ${o.accounts}` : ''}${o.lock ? ', lock' : ''}${o.dryRun ? ' (dry run)' : ''} by ${requester}`,
      options: { ...o, as: requester },
      print: (r) => {
        console.log(`\n${r.plan}\n`);
        console.log(`${r.status}: ${r.assessment.targets.length} account(s) ${r.status === 'succeeded' ? 'contained' : 'to contain'}: ${r.assessment.targets.join(', ') || 'none'}`);
        if (r.snapshotFile) console.log(`snapshot: ${r.snapshotFile} (undo: runbook revoke ${o.cluster} --undo ${incidentId} --reason … --as …)`);
        for (const [i, ids] of Object.entries(r.killed ?? {})) console.log(`  ${i}: ${ids.length} session(s) ended`);
        for (const a of r.audit ?? []) console.log(`  audit on ${a.instance}: ${a.method}${a.alreadyOn ? ' (already on)' : ''} → ${a.target}`);
        if (r.report) console.log(`access report: ${r.report.files.join(', ')}; ${r.report.summary.gaps.length} period(s) without evidence`);
      },
    }),
  );
}

async function startRevokeUndo(o: RevokeCliOptions): Promise<number> {
  const bad = incidentIdProblem('--undo', o.undo, { required: true });
  if (bad) throw new Error(bad);
  if (o.object || o.accounts || o.lock || o.grantsFile || o.since || o.until) throw new Error('--undo restores an incident\'s snapshot: it takes no --object, --accounts, --lock, --grants-file, --since or --until');
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  const incidentId = o.incident ?? newIncidentId();
  const input: RevokeUndoInput = { cluster: o.cluster, undoIncident: o.undo!, requester, reason: o.reason, incidentId, dryRun: o.dryRun, configFingerprint };
  return withClient((c) =>
    startIncidentRunbook<typeof revokeUndo>(c, {
      type: 'revokeUndo',
      workflowId: `revoke-undo-${o.cluster}-${incidentId}`,
      input,
      cluster: o.cluster,
      incidentId,
      summary: `revoke undo ${o.cluster}: incident ${o.undo}${o.dryRun ? ' (dry run)' : ''} by ${requester}`,
      options: { ...o, as: requester },
      print: (r) => {
        console.log(`\n${r.status}: ${r.restored.length ? `restored ${r.restored.join(', ')}` : 'nothing restored'}`);
      },
    }),
  );
}
