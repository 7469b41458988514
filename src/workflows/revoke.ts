/**
 * Permission revocation runbook (seed 004 §3.2: a wrong GRANT exposed patient data to every staff
 * account), as a DBA runs it on MariaDB 10.11:
 *
 *   assess → snapshot → approval → lock cluster → enable audit (each instance)
 *   → revoke on the primary → apply on each replica → end sessions (each instance)
 *   → verify containment → converge to the declared grants → verify declared grants
 *   → unlock cluster → access report → record
 *
 * Why each step exists: SHOW GRANTS FOR a user under-reports (PUBLIC, roles), so the assessment
 * computes the effective matrix on every instance. REVOKE does not end a live session's access (a
 * database grant holds until its next USE, a global one until it reconnects) and ACCOUNT LOCK
 * refuses only new logins; only KILL ends them, and KILL does not replicate: every instance gets
 * its own sweep. REVOKE replicates, and stops a replica's SQL thread where that replica's grants
 * differ: such a grantee is changed on each server by itself, unlogged. Containment is verified
 * on every instance, never assumed. `revokeUndo` restores an incident's snapshot exactly.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ApplyResult, InstanceGrantState, SweepResult } from '../activities/revoke';
import type { AuditEnabled, Evidence } from '../core/grants';
import {
  accessReportMarkdown, approvedStatements, buildAccessReport, chooseTargets, containmentTarget, declaredGrantSet, describeDrift,
  describeGrantPlan, describePath, describeSession, effectiveMatrix, exposedAccounts, grantDrift, planGrantChanges, planStatementCount,
  sameGrants, sessionsOf, splitAccount, summariseReport, tableKey, type AccessReport, type AccessReportSummary, type AccountExposure, type DeclaredAccount,
  type Drift, type GrantPlan, type GrantState, type SessionInfo, type TableRef,
} from '../core/grants';
import type { ClusterPolicy } from '../core/failover';
import { ApprovalGate } from './shared/approval';
import { runRunbook, type Runbook } from './shared/runbook';
import type { StartedFromCli } from '../core/runbookDefinitions';
import { incidentIdProblem } from '../core/inputs';
import { revokeInputProblems } from '../core/grants';

export interface RevokeInput extends StartedFromCli {
  cluster: string;
  /** The sensitive tables, `db.table`. */
  objects: string[];
  /** Which exposed accounts to contain: a LIKE pattern on the user, or on `user@host`. Default: every exposed account. */
  accounts?: string;
  /** ACCOUNT LOCK the contained accounts as well. */
  lock?: boolean;
  /** The grants file: the exact grants these accounts should end with. */
  declared?: DeclaredAccount[];
  /** The access report's window (epoch ms); no report without `since`. `until` defaults to the report's time. */
  since?: number;
  until?: number;
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface RevokeUndoInput extends StartedFromCli {
  cluster: string;
  /** The incident whose snapshot is restored. */
  undoIncident: string;
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface Assessment {
  primary: string;
  instances: string[];
  /** Per instance: every account with any privilege on the objects, and how. */
  matrix: Record<string, AccountExposure[]>;
  /** Per instance: live sessions of the exposed accounts. */
  sessions: Record<string, SessionInfo[]>;
  drift: Drift[];
  targets: string[];
  excluded: { account: string; why: string }[];
}

export interface RevokeResult {
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  assessment: Assessment;
  /** The plan as the approvers saw it (markdown). */
  plan: string;
  containPlan: GrantPlan;
  declaredPlan?: GrantPlan;
  snapshotFile?: string;
  killed?: Record<string, number[]>;
  audit?: (AuditEnabled & { instance: string })[];
  report?: { files: string[]; summary: AccessReportSummary };
}

export interface RevokeUndoResult {
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  plan: GrantPlan;
  restored: string[];
}

/** The incident's snapshot file: every grantee's grants on every instance before anything changed. */
export interface RevokeSnapshot {
  cluster: string;
  incidentId: string;
  takenAt: number;
  objects: string[];
  /** The grantees this incident changes: what an undo restores. */
  involved: string[];
  instances: Record<string, GrantState>;
}

/** Every step of the runbook, in order (per-instance steps as a template). */
export const REVOKE_STEPS = [
  'assess', 'plan', 'snapshot', 'approval', 'lock cluster', 'enable audit on <instance>', 'revoke on <primary>', 'apply on <replica>', 'end sessions on <instance>',
  'verify containment', 'converge on <primary>', 'converge on <replica>', 'verify declared grants', 'unlock cluster', 'access report', 'record',
] as const;
export const REVOKE_UNDO_STEPS = ['load snapshot', 'assess', 'approval', 'lock cluster', 'restore on <primary>', 'restore on <replica>', 'verify restored grants', 'unlock cluster', 'record'] as const;

/** Never contained: the engine's own accounts are in the config; these are the server's. */
const SYSTEM_USERS = ['root', 'mariadb.sys'];

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });
// Changes and sweeps heartbeat: a dead worker is noticed within seconds and another carries on.
const change = wf.proxyActivities<Activities>({ startToCloseTimeout: '10m', heartbeatTimeout: '10s', retry: { initialInterval: '500ms', maximumAttempts: 5 } });
// Reading binlogs and audit logs runs as long as there is log to read.
const long = wf.proxyActivities<Activities>({ startToCloseTimeout: '2h', heartbeatTimeout: '60s', retry: { initialInterval: '1s', maximumAttempts: 3 } });

const refuse = (message: string, type = 'PreconditionFailed') => ApplicationFailure.nonRetryable(message, type);

export async function revoke(input: RevokeInput): Promise<RevokeResult> {
  const meta = { runbook: 'revoke', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  return runRunbook(
    meta,
    async (rb) => {
      const objects = input.objects.map(toTable);
      const policy = await act.clusterPolicy({ cluster: input.cluster, runbook: 'revoke', mode: 'contain' });
      const protectedUsers = [...SYSTEM_USERS, ...(await act.engineUsers({ cluster: input.cluster }))];

      // 1. assess: what every instance enforces, who is exposed and how, who is connected.
      const { states, assessment } = await rb.step(
        'assess',
        async () => {
          const topology = await act.probeTopology(input.cluster);
          if (!topology.primary) throw refuse(`${input.cluster} has no single primary (${topology.problems.join('; ') || 'none writable'}): grants are changed on the primary`, 'NoPrimary');
          const reachable = topology.instances.filter((i) => i.reachable).map((i) => i.instance);
          const unreachable = topology.instances.filter((i) => !i.reachable).map((i) => i.instance);
          // KILL does not replicate: an instance that cannot be swept cannot be contained.
          if (unreachable.length) throw refuse(`unreachable: ${unreachable.join(', ')}: its sessions could not be ended; containment would not be complete`, 'InstanceUnreachable');
          const read = await Promise.all(reachable.map((instance) => act.readGrantState({ cluster: input.cluster, instance, objects })));
          const states = Object.fromEntries(read.map((r) => [r.instance, r])) as Record<string, InstanceGrantState>;
          const missing = states[topology.primary]!.missingObjects;
          if (missing.length) throw refuse(`no such table on ${topology.primary}: ${missing.join(', ')}`, 'BadInput');
          return { states, assessment: assess(states, topology.primary, objects, input.accounts, protectedUsers) };
        },
        { note: (a) => assessmentNote(a.assessment), detail: (a) => ({ assessment: a.assessment }) },
      );
      const primary = assessment.primary;
      const replicas = assessment.instances.filter((i) => i !== primary);
      rb.details.revoke = { assessment };

      // The plan: containment per instance, then the declared grants on top of it.
      const { containPlan, containTargets, declaredPlan, declaredTargets, rewrites, involved } = await rb.step(
        'plan',
        async () => {
          const p = plan(input, states, assessment, objects);
          if (!assessment.targets.length && !p.declaredPlan) throw refuse(`no account to contain: ${assessment.excluded.length ? assessment.excluded.map((e) => `${e.account} (${e.why})`).join('; ') : `nothing exposes ${input.objects.join(', ')}`}`, 'NothingToDo');
          return p;
        },
        { note: (p) => `${planStatementCount(p.containPlan)} statement(s) to contain${p.declaredPlan ? `, ${planStatementCount(p.declaredPlan)} to converge to the grants file` : ''}; ${p.rewrites.length} rewrite(s)` },
      );
      const description = describePlan(input, assessment, containPlan, declaredPlan, rewrites);
      rb.details.revoke = { assessment, containPlan, declaredPlan };

      // 2. snapshot: taken once per incident; a re-run keeps the first one.
      const snapshot: RevokeSnapshot = {
        cluster: input.cluster, incidentId: input.incidentId, takenAt: Math.min(...Object.values(states).map((x) => x.readAt)), objects: input.objects, involved,
        instances: Object.fromEntries(Object.entries(states).map(([i, s]) => [i, s.grants])),
      };
      const stored = input.dryRun
        ? undefined
        : await rb.step('snapshot', () => act.writeIncidentFile({ cluster: input.cluster, incidentId: input.incidentId, name: 'snapshot.json', content: JSON.stringify(snapshot, null, 1), once: true }), {
            note: (f) => `${f.path}${f.kept ? ' (kept from an earlier run of this incident)' : ''}: ${involved.length} grantee(s) to restore on undo, sha256 ${f.sha256.slice(0, 12)}`,
            detail: () => ({ snapshot: { ...snapshot, instances: Object.fromEntries(Object.entries(snapshot.instances).map(([i, g]) => [i, Object.fromEntries(involved.filter((k) => g[k]).map((k) => [k, g[k]]))])) } }),
          });
      if (input.dryRun) {
        for (const s of ['snapshot', 'approval', 'lock cluster', 'contain', 'verify containment', 'access report']) rb.skip(s, 'dry run: nothing changed');
        rb.details.revoke = { assessment, containPlan, declaredPlan, plan: description };
        rb.outcome = 'dry_run';
        return { status: 'dry_run', assessment, plan: description, containPlan, declaredPlan };
      }

      rb.open({
        title: `revoke ${input.cluster}: ${input.objects.join(', ')} by ${input.requester}`,
        severity: 'L1',
        plan: description,
        impact: `${assessment.targets.length} account(s) lose row access to ${input.objects.join(', ')} on ${assessment.instances.length} instance(s)${input.lock ? ' and are locked' : ''}; ${Object.values(assessment.sessions).flat().length} live session(s) are ended`,
        eta: 'minutes once approved',
        rootCause: input.reason,
      });
      const decision = await approval(rb, policy, input.requester, 'contain');
      if (decision) return { status: decision, assessment, plan: description, containPlan, declaredPlan, snapshotFile: stored?.path };

      const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
      await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'revoke', operator: input.requester }));
      let audit: (AuditEnabled & { instance: string })[];
      const killed: Record<string, number[]> = {};
      try {
        // 6 (first, so reads are recorded while the rest happens). Not binlogged; every instance.
        audit = [];
        for (const instance of assessment.instances) {
          audit.push(
            await rb.step(`enable audit on ${instance}`, () => change.enableReadAudit({ cluster: input.cluster, instance }), {
              note: (a) => `${a.method}${a.alreadyOn ? ' (already on)' : ''} → ${a.target}${a.fallbackBecause ? `; ${a.fallbackBecause}` : ''}${a.changes.length ? `; ${a.changes.join('; ')}` : ''}`,
            }),
          );
        }

        // 4. contain: once on the primary (replicated), then each replica (waiting for it, plus its own unlogged changes).
        const applied = await applyPlan(rb, input.cluster, 'revoke', 'apply', containPlan, containTargets, primary, replicas);
        const targetAccounts = assessment.targets.map(splitAccount);
        for (const instance of assessment.instances) {
          const sweep: SweepResult = await rb.step(
            `end sessions on ${instance}`,
            () => change.endSessions({ cluster: input.cluster, instance, accounts: targetAccounts, below: applied[instance]!.watermark, expected: sessionsOf(states[instance]!.sessions, targetAccounts).map((s) => s.id) }),
            { note: (s) => sweepNote(s), detail: (s) => ({ sweep: s }) },
          );
          killed[instance] = sweep.killed.map((s) => s.id);
        }
        await rb.step('verify containment', () => verifyContainment(input, objects, assessment, applied), { note: (v) => v });

        // 5. the declared grants (a grants file), computed and approved with the rest.
        if (declaredPlan) {
          await applyPlan(rb, input.cluster, 'converge', 'converge', declaredPlan, declaredTargets, primary, replicas);
          await rb.step('verify declared grants', () => verifyDeclared(input, objects, assessment, declaredTargets), { note: (v) => v });
        }
      } finally {
        await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
      }

      // 7. the access report, with where no evidence exists.
      let report: RevokeResult['report'];
      if (input.since !== undefined) {
        report = await rb.step('access report', () => accessReport(input, objects, assessment), {
          note: (r) => `${r.summary.accesses.length} account(s) with recorded access; ${r.summary.gaps.length} period(s) without evidence; ${r.files.join(', ')}`,
          detail: (r) => ({ report: r.summary }),
        });
        rb.updateNotice({ accessReport: report.summary });
      } else rb.skip('access report', 'no --since: no report asked for');

      const result: RevokeResult = { status: 'succeeded', assessment, plan: description, containPlan, declaredPlan, snapshotFile: stored?.path, killed, audit: audit!, report };
      await rb.step('record', async () => result, {
        note: () => `${assessment.targets.length} account(s) contained on ${assessment.instances.length} instance(s); ${Object.values(killed).flat().length} session(s) ended; audit: ${audit!.map((a) => `${a.instance} ${a.method}`).join(', ')}`,
        detail: () => ({ contained: assessment.targets, killed, audit: audit!.map((a) => ({ instance: a.instance, method: a.method, alreadyOn: a.alreadyOn })) }),
      });
      rb.updateNotice({
        followUp: [
          `undo (after approval): runbook revoke ${input.cluster} --undo ${input.incidentId} --reason … --as …`,
          `audit (${[...new Set(audit!.map((a) => a.method))].join(', ')}) was turned on with SET GLOBAL: put it in my.cnf, or it is off again after a restart`,
        ],
      });
      return result;
    },
    revokeInputProblems(input),
  );
}

export async function revokeUndo(input: RevokeUndoInput): Promise<RevokeUndoResult> {
  const meta = { runbook: 'revoke-undo', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  return runRunbook(
    meta,
    async (rb) => {
      const snapshot = await rb.step(
        'load snapshot',
        async () => JSON.parse(await act.readIncidentFile({ cluster: input.cluster, incidentId: input.undoIncident, name: 'snapshot.json' })) as RevokeSnapshot,
        { note: (s) => `incident ${s.incidentId}, taken ${new Date(s.takenAt).toISOString()}: ${s.involved.join(', ') || 'nothing'} on ${Object.keys(s.instances).join(', ')}` },
      );
      const objects = snapshot.objects.map(toTable);
      const { states, primary } = await rb.step(
        'assess',
        async () => {
          const topology = await act.probeTopology(input.cluster);
          if (!topology.primary) throw refuse(`${input.cluster} has no single primary: grants are restored on the primary`, 'NoPrimary');
          const read = await Promise.all(topology.instances.filter((i) => i.reachable).map((i) => act.readGrantState({ cluster: input.cluster, instance: i.instance, objects })));
          return { states: Object.fromEntries(read.map((r) => [r.instance, r.grants])) as Record<string, GrantState>, primary: topology.primary };
        },
        { note: (a) => `primary ${a.primary}; ${Object.keys(a.states).length} instance(s) read` },
      );
      const targets: Record<string, GrantState> = {};
      const gone: string[] = [];
      for (const [instance, current] of Object.entries(states)) {
        targets[instance] = {};
        for (const key of snapshot.involved) {
          const was = snapshot.instances[instance]?.[key];
          if (!was) continue;
          if (!current[key]) gone.push(`${key} on ${instance}`);
          else targets[instance]![key] = was;
        }
      }
      const plan = planGrantChanges(states, targets, primary);
      const description = [...describeGrantPlan(plan, `restore the snapshot of incident ${snapshot.incidentId}`), ...gone.map((g) => `- ${g}: dropped since the snapshot, not recreated (its password is not in the snapshot)`)].join('\n');
      rb.details.revoke = { plan, description };
      if (input.dryRun) {
        for (const s of ['approval', 'lock cluster', 'restore', 'verify restored grants']) rb.skip(s, 'dry run: nothing changed');
        rb.outcome = 'dry_run';
        return { status: 'dry_run', plan, restored: [] };
      }
      rb.open({ title: `revoke undo ${input.cluster}: incident ${snapshot.incidentId} by ${input.requester}`, severity: 'L2', plan: description, impact: `${snapshot.involved.length} grantee(s) get their grants from before incident ${snapshot.incidentId} back`, eta: 'minutes once approved', rootCause: input.reason });
      const decision = await approval(rb, await act.clusterPolicy({ cluster: input.cluster, runbook: 'revoke', mode: 'undo' }), input.requester, 'restore');
      if (decision) return { status: decision, plan, restored: [] };
      const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
      await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'revoke-undo', operator: input.requester }));
      try {
        await applyPlan(rb, input.cluster, 'restore', 'restore', plan, targets, primary, Object.keys(states).filter((i) => i !== primary));
        await rb.step(
          'verify restored grants',
          async () => {
            const problems: string[] = [];
            for (const instance of Object.keys(states)) {
              const now = (await act.readGrantState({ cluster: input.cluster, instance, objects })).grants;
              for (const [key, want] of Object.entries(targets[instance]!)) if (!sameGrants(now[key], want)) problems.push(`${key} on ${instance}`);
            }
            if (problems.length) throw refuse(`not as in the snapshot: ${problems.join(', ')}`, 'VerificationFailed');
            return `${snapshot.involved.length} grantee(s) equal to the snapshot on ${Object.keys(states).length} instance(s) (normalised grants)`;
          },
          { note: (v) => v },
        );
      } finally {
        await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
      }
      await rb.step('record', async () => snapshot.involved, { note: (r) => `restored ${r.join(', ')} from incident ${snapshot.incidentId}` });
      return { status: 'succeeded', plan, restored: snapshot.involved };
    },
    [incidentIdProblem('undoIncident', input.undoIncident, { required: true })],
  );
}

// ---------------------------------------------------------------------------------------------
// The DBA's procedure, piece by piece

/** The approval gate; a rejected or timed-out run ends there (returned), having changed nothing. */
async function approval(rb: Runbook, policy: ClusterPolicy, requester: string, next: string): Promise<'rejected' | 'timed_out' | undefined> {
  const gate = new ApprovalGate(rb, policy.approval, requester);
  const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
  if (decision !== 'rejected' && decision !== 'timed_out') return undefined;
  rb.skip(next, `approval ${decision}: nothing changed`);
  rb.outcome = decision;
  return decision;
}

function toTable(o: string): TableRef {
  const [db, table] = o.replace(/`/g, '').split('.') as [string, string];
  return { db, table };
}

function assess(states: Record<string, InstanceGrantState>, primary: string, objects: TableRef[], accounts: string | undefined, protectedUsers: string[]): Assessment {
  const instances = Object.keys(states).sort((a, b) => (a === primary ? -1 : b === primary ? 1 : a.localeCompare(b)));
  const matrix: Record<string, AccountExposure[]> = {};
  const sessions: Record<string, SessionInfo[]> = {};
  for (const i of instances) matrix[i] = effectiveMatrix(states[i]!.grants, objects);
  // The targets are chosen from every instance: an account exposed only on a replica (drift) counts.
  const union = new Map<string, AccountExposure>();
  for (const i of instances) {
    for (const m of matrix[i]!) {
      const seen = union.get(m.account)?.paths ?? [];
      const known = new Set(seen.map((p) => JSON.stringify(p)));
      union.set(m.account, { ...m, paths: [...seen, ...m.paths.filter((p) => !known.has(JSON.stringify(p)))] });
    }
  }
  const choice = chooseTargets([...union.values()], accounts, protectedUsers);
  if (choice.refusals.length) throw refuse(choice.refusals.join('; '), 'BadInput');
  const exposed = exposedAccounts([...union.values()]).map((a) => splitAccount(a.account));
  for (const i of instances) sessions[i] = sessionsOf(states[i]!.sessions, exposed);
  const relevant = new Set([...choice.targets, 'PUBLIC', ...[...union.values()].flatMap((m) => m.paths.map((p) => p.heldRole).filter((r): r is string => !!r))]);
  const drift = grantDrift(Object.fromEntries(instances.map((i) => [i, states[i]!.grants])), primary, relevant);
  return { primary, instances, matrix, sessions, drift, targets: choice.targets, excluded: choice.excluded };
}

function plan(input: RevokeInput, states: Record<string, InstanceGrantState>, a: Assessment, objects: TableRef[]) {
  const current: Record<string, GrantState> = {};
  const containTargets: Record<string, GrantState> = {};
  const afterContain: Record<string, GrantState> = {};
  const rewrites: { grantee: string; note: string }[] = [];
  for (const i of a.instances) {
    current[i] = states[i]!.grants;
    const c = containmentTarget(current[i]!, a.matrix[i]!, a.targets, objects, states[i]!.catalog, Boolean(input.lock));
    containTargets[i] = c.targets;
    afterContain[i] = { ...current[i]!, ...c.targets };
    if (i === a.primary) rewrites.push(...c.rewrites);
  }
  const containPlan = planGrantChanges(current, containTargets, a.primary);
  for (const s of containPlan.servers) s.kill = sessionsOf(states[s.instance]!.sessions, a.targets.map(splitAccount));
  let declaredPlan: GrantPlan | undefined;
  const declaredTargets: Record<string, GrantState> = {};
  if (input.declared?.length) {
    for (const d of input.declared) if (!afterContain[a.primary]![d.account]) throw refuse(`--grants-file: no account ${d.account} on ${a.primary} (accounts are not created by this runbook)`, 'BadInput');
    for (const i of a.instances) {
      declaredTargets[i] = {};
      for (const d of input.declared) {
        const cur = afterContain[i]![d.account];
        if (cur) declaredTargets[i]![d.account] = declaredGrantSet(d, cur);
      }
    }
    declaredPlan = planGrantChanges(afterContain, declaredTargets, a.primary);
  }
  const involved = [...new Set([...Object.values(containTargets).flatMap(Object.keys), ...(input.declared ?? []).map((d) => d.account)])].sort();
  return { containPlan, containTargets, declaredPlan, declaredTargets, rewrites, involved };
}

function assessmentNote(a: Assessment): string {
  const exposed = new Set(Object.values(a.matrix).flatMap((m) => exposedAccounts(m).map((x) => x.account)));
  const live = Object.entries(a.sessions).map(([i, s]) => `${i} ${s.length}`).join(', ');
  return `${exposed.size} exposed account(s), ${a.targets.length} to contain (${a.targets.join(', ') || 'none'}); live sessions: ${live}; drift: ${a.drift.length ? a.drift.map(describeDrift).join(' | ') : 'none'}`;
}

function describePlan(input: RevokeInput, a: Assessment, contain: GrantPlan, declared: GrantPlan | undefined, rewrites: { grantee: string; note: string }[]): string {
  const lines: string[] = [`**Exposure of ${input.objects.join(', ')}** (effective: direct, via role, via PUBLIC)`];
  for (const i of a.instances) {
    const exposed = exposedAccounts(a.matrix[i]!);
    lines.push(`- ${i}: ${exposed.length ? '' : 'nobody'}`);
    for (const e of exposed) lines.push(`  - ${e.account}: ${e.paths.map((p) => describePath(p, true)).join('; ')}`);
  }
  if (a.excluded.length) lines.push('**Not changed**', ...a.excluded.map((e) => `- ${e.account}: ${e.why}`));
  if (a.drift.length) lines.push('**Grant drift between instances**', ...a.drift.map((d) => `- ${describeDrift(d)}`));
  if (rewrites.length) lines.push('**Rewritten (no negative grants in 10.11)**', ...rewrites.map((r) => `- ${r.grantee}: ${r.note}`));
  lines.push(...describeGrantPlan(contain, `Contain${input.lock ? ' (and ACCOUNT LOCK)' : ''}`));
  lines.push('**End sessions (KILL does not replicate: on every instance)**');
  for (const i of a.instances) {
    const s = contain.servers.find((x) => x.instance === i)?.kill ?? [];
    lines.push(`- ${i}: ${s.length ? s.map((x) => `\`KILL CONNECTION ${x.id}\` (${describeSession(x)})`).join('; ') : 'none now'}; and any other session of these accounts older than the change`);
  }
  if (declared) lines.push(...describeGrantPlan(declared, 'Converge to the grants file'));
  lines.push('**Audit**', '- server_audit (CONNECT,QUERY_DML,TABLE to a file) on every instance, else general_log to mysql.general_log; SET GLOBAL, not binlogged');
  return lines.join('\n');
}

async function applyPlan(rb: Runbook, cluster: string, primaryVerb: string, replicaVerb: string, plan: GrantPlan, targets: Record<string, GrantState>, primary: string, replicas: string[]): Promise<Record<string, ApplyResult>> {
  const out: Record<string, ApplyResult> = {};
  const note = (r: ApplyResult) => `${r.executed.length} statement(s)${r.executed.length ? `: ${r.executed.map((e) => `${e.sql}${e.binlog ? '' : ' (unlogged)'}`).join('; ')}` : ' (already in effect)'}`;
  out[primary] = await rb.step(`${primaryVerb} on ${primary}`, () => change.applyGrantChanges({ cluster, instance: primary, approved: approvedStatements(plan, primary), targets: targets[primary] ?? {} }), {
    note,
    detail: (r) => ({ applied: r }),
  });
  for (const r of replicas) {
    out[r] = await rb.step(`${replicaVerb} on ${r}`, () => change.applyGrantChanges({ cluster, instance: r, approved: approvedStatements(plan, r), targets: targets[r] ?? {}, waitFor: out[primary]!.position }), {
      note: (x) => `replicated up to ${out[primary]!.position}; ${note(x)}`,
      detail: (x) => ({ applied: x }),
    });
  }
  return out;
}

function sweepNote(s: SweepResult): string {
  const k = s.killed.length ? `ended ${s.killed.map(describeSession).join('; ')}` : 'nothing left to end';
  return `${k}${s.alreadyGone.length ? `; already gone: #${s.alreadyGone.join(', #')}` : ''}`;
}

/** On every instance: no affected session left, locks in place, the matrix without the exposure. */
async function verifyContainment(input: RevokeInput, objects: TableRef[], a: Assessment, applied: Record<string, ApplyResult>): Promise<string> {
  const problems: string[] = [];
  const accounts = a.targets.map(splitAccount);
  for (const instance of a.instances) {
    const s = await act.readGrantState({ cluster: input.cluster, instance, objects });
    const left = sessionsOf(s.sessions, accounts, applied[instance]!.watermark);
    if (left.length) problems.push(`${instance}: session(s) still there: ${left.map(describeSession).join('; ')}`);
    const still = exposedAccounts(effectiveMatrix(s.grants, objects)).filter((e) => a.targets.includes(e.account));
    for (const e of still) problems.push(`${instance}: ${e.account} still ${e.paths.map((p) => describePath(p)).join('; ')}`);
    if (input.lock) for (const t of a.targets) if (s.grants[t] && !s.grants[t]!.locked) problems.push(`${instance}: ${t} is not locked`);
  }
  if (problems.length) throw refuse(`containment not complete: ${problems.join(' | ')}`, 'VerificationFailed');
  return `on ${a.instances.join(', ')}: no session of ${a.targets.join(', ')} older than the change; none of them has row access to ${input.objects.join(', ')}${input.lock ? '; all locked (SHOW CREATE USER: ACCOUNT LOCK; a new login gets 4151)' : ''}`;
}

async function verifyDeclared(input: RevokeInput, objects: TableRef[], a: Assessment, targets: Record<string, GrantState>): Promise<string> {
  const problems: string[] = [];
  for (const instance of a.instances) {
    const s = await act.readGrantState({ cluster: input.cluster, instance, objects });
    for (const [key, want] of Object.entries(targets[instance] ?? {})) if (!sameGrants(s.grants[key], want)) problems.push(`${key} on ${instance}`);
  }
  if (problems.length) throw refuse(`not exactly the declared grants: ${problems.join(', ')}`, 'VerificationFailed');
  return `${input.declared!.map((d) => d.account).join(', ')} hold exactly the declared grants on ${a.instances.join(', ')}`;
}

async function accessReport(input: RevokeInput, objects: TableRef[], a: Assessment): Promise<{ files: string[]; summary: AccessReportSummary }> {
  // Without --until the window ends when the evidence is read (each server's own clock).
  const evidence: (Evidence & { until: number })[] = await Promise.all(
    a.instances.map((instance) => long.collectAccessEvidence({ cluster: input.cluster, instance, objects, since: input.since!, until: input.until, primary: instance === a.primary })),
  );
  const until = input.until ?? Math.min(...evidence.map((e) => e.until));
  const report: AccessReport = buildAccessReport({
    cluster: input.cluster, incidentId: input.incidentId, objects: objects.map(tableKey), since: input.since!, until, generatedAt: Math.max(...evidence.map((e) => e.until)), instances: a.instances, primary: a.primary,
    sources: evidence.flatMap((e) => e.sources), events: evidence.flatMap((e) => e.events),
    exposedAtAssessment: [...new Set(Object.values(a.matrix).flatMap((m) => exposedAccounts(m).map((x) => x.account)))],
  });
  const md = await act.writeIncidentFile({ cluster: input.cluster, incidentId: input.incidentId, name: 'report.md', content: accessReportMarkdown(report) });
  const json = await act.writeIncidentFile({ cluster: input.cluster, incidentId: input.incidentId, name: 'report.json', content: JSON.stringify(report, null, 1) });
  return { files: [md.path, json.path], summary: summariseReport(report, [md.path, json.path]) };
}

