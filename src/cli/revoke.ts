/**
 * `runbook revoke`: contain a grant mistake on every server (issue #14), and `--undo` an incident.
 * Every input is bounded here before anything starts (src/shared/inputs.ts), and again by the
 * workflow before its first step.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import YAML from 'yaml';
import { getCluster, loadConfig, configPathFromEnv } from '../config/load';
import { parsePointInTime } from '../backup/coverage';
import type { DeclaredAccount } from '../core/grants';
import { incidentIdProblem, revokeInputProblems } from '../shared/inputs';
import type { RevokeInput, RevokeResult, RevokeUndoInput, RevokeUndoResult } from '../workflows/revoke';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type IncidentCliOptions } from './runbooks';

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
    startIncidentRunbook<RevokeResult>(c, {
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
    startIncidentRunbook<RevokeUndoResult>(c, {
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

export function registerRevokeCommands(program: Command): void {
  program
    .command('revoke <cluster>')
    .description('contain a grant mistake: revoke (rewriting broad grants), optionally lock, end the sessions on every instance, verify; report who accessed what; or --undo an incident')
    .option('--object <db.table,...>', 'the sensitive table(s)')
    .option('--accounts <pattern>', "the exposed accounts to contain: a LIKE pattern on the user, or on user@host ('staff_%'); default every exposed account")
    .option('--lock', 'ACCOUNT LOCK the contained accounts too')
    .option('--grants-file <yaml>', 'converge these accounts to exactly the declared grants afterwards')
    .option('--since <time>', 'access report from this RFC 3339 time (with an offset)')
    .option('--until <time>', 'access report until this RFC 3339 time (default: now)')
    .option('--undo <incident>', "restore that incident's snapshot exactly (after approval)")
    .requiredOption('--reason <text>', 'why (goes to the audit log)')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is revoke-<cluster>-<incident>')
    .option('--dry-run', 'assess and plan; change nothing')
    .option('--detach', 'start it and return at once')
    .option('--json', 'machine-readable output')
    .action(async (cluster: string, opts) => {
      getCluster(loadConfig(configPathFromEnv()), cluster);
      process.exitCode = await startRevoke({ cluster, ...opts });
    });
}
