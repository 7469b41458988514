/**
 * The bounds of everything an operator types, checked at every edge: the CLI before it starts
 * anything, the approval endpoint before it forwards a decision, and the workflows themselves
 * before their first step (a client can start a workflow without the CLI). Each check returns a
 * one-line problem naming the field and what was expected, or undefined; callers turn it into their
 * own kind of refusal. Workflow-safe: no I/O, and no regular expression here can backtrack (each is
 * a single character class with a bounded count, tested after the length).
 */
import { FAILOVER_LOG_COLUMNS as COLUMN } from '../control/migrations';
import { declaredProblems, type DeclaredAccount } from '../core/grants';

/** How long each free-text input may be, in characters: the column it is written to. */
export const INPUT_LIMITS = {
  /** `--reason` → failover_log.reason */
  reason: COLUMN.reason,
  /** `--as`, approver names, people[].name → failover_log.operator */
  identity: COLUMN.operator,
  /** `--incident` → failover_log.incident_id (and the workflow id) */
  incidentId: COLUMN.incident_id,
  /** An approval's comment is shown beside the reason: the same bound. */
  comment: COLUMN.reason,
  /** A workflow id a decision or a link names → failover_log.workflow_id */
  workflowId: COLUMN.workflow_id,
  /** An OS login a CLI approval carries (POSIX allows 32; some systems more). */
  login: COLUMN.operator,
  /** A `--statement` / `--not-statement` pattern: bounded so a pasted log cannot become one. */
  pattern: 200,
} as const;

/** Length in characters as MariaDB counts them (code points), not UTF-16 units. */
export function characters(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

/** The first `max` characters of a value, with a marker saying it was cut. */
export function clip(value: string, max: number): string {
  if (characters(value) <= max) return value;
  const marker = max >= 24 ? '…[truncated]' : '…';
  return [...value].slice(0, Math.max(0, max - characters(marker))).join('') + marker;
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** One line of text of at most `max` characters (undefined when absent and not required). */
export function textProblem(field: string, value: unknown, max: number, opts: { required?: boolean } = {}): string | undefined {
  if (value === undefined || value === null || value === '') return opts.required ? `${field} is required` : undefined;
  if (typeof value !== 'string') return `${field} must be text, got ${typeof value}`;
  const length = characters(value);
  if (length > max) return `${field} is ${length} characters long; at most ${max}`;
  if (hasControlCharacter(value)) return `${field} holds a control character (a newline, a tab…): one line of text, please`;
  if (opts.required && !value.trim()) return `${field} is required`;
  return undefined;
}

/** An incident id: it becomes part of a workflow id, so letters, digits, `.`, `_`, `-` only. */
export const INCIDENT_ID_FORMAT = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const INCIDENT_ID = new RegExp(INCIDENT_ID_FORMAT);

export function incidentIdProblem(field: string, value: unknown, opts: { required?: boolean } = {}): string | undefined {
  const text = textProblem(field, value, INPUT_LIMITS.incidentId, opts);
  if (text || value === undefined || value === '') return text;
  if (!INCIDENT_ID.test(value as string)) return `${field} "${value}" is not an incident id: a letter or digit, then letters, digits, ".", "_" or "-" (at most ${INPUT_LIMITS.incidentId})`;
  return undefined;
}

/** A config name (cluster, region, instance): what the config schema allows. */
export const NAME_FORMAT = /^[a-z][a-z0-9_-]{0,62}$/;

export function nameProblem(field: string, value: unknown, opts: { required?: boolean } = {}): string | undefined {
  const text = textProblem(field, value, 63, opts);
  if (text || value === undefined || value === '') return text;
  if (!NAME_FORMAT.test(value as string)) return `${field} "${value}" is not a name: a lower-case letter, then letters, digits, "-" or "_"`;
  return undefined;
}

/** A person's identity (`--as`, an approver): one line that fits failover_log.operator. */
export function identityProblem(field: string, value: unknown, opts: { required?: boolean } = {}): string | undefined {
  return textProblem(field, value, INPUT_LIMITS.identity, opts);
}

const UINT32_MAX = 4294967295n;
const UINT64_MAX = 18446744073709551615n;
const GTID = /^[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,20}$/;

/** A MariaDB GTID `domain-server-sequence`, each part within its integer range. */
export function gtidProblem(field: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const bad = `${field} must be a GTID like 0-23101-4711`;
  if (typeof value !== 'string' || value.length > 42 || !GTID.test(value)) return `${bad}, got ${JSON.stringify(typeof value === 'string' ? clip(value, 60) : value)}`;
  const [domain, server, seq] = value.split('-').map((p) => BigInt(p));
  if (domain! > UINT32_MAX || server! > UINT32_MAX || seq! > UINT64_MAX) return `${bad}: ${value} is out of range`;
  return undefined;
}

const TABLE = /^[A-Za-z0-9_$]{1,64}(\.[A-Za-z0-9_$]{1,64})?$/;

/**
 * A table as the binlogs name it: `db.table`, or (where a search allows it) a table name alone;
 * unquoted identifiers (letters, digits, `_`, `$`), backticks allowed around them.
 */
export function tableProblem(field: string, value: unknown, opts: { qualified?: boolean } = {}): string | undefined {
  if (value === undefined) return undefined;
  const bare = typeof value === 'string' ? value.replace(/`/g, '') : undefined;
  if (bare === undefined || bare.length > 129 || !TABLE.test(bare) || (opts.qualified && !bare.includes('.'))) {
    const shape = opts.qualified ? 'db.table' : 'db.table or a table name';
    return `${field} must be ${shape} (letters, digits, "_" or "$", at most 64 each), got ${JSON.stringify(typeof value === 'string' ? clip(value, 60) : value)}`;
  }
  return undefined;
}

/** What every runbook's input carries about who and why, checked before its first step. */
export function runbookMetaProblems(meta: { cluster: unknown; operator: unknown; reason?: unknown; incidentId?: unknown }): string[] {
  return [
    nameProblem('cluster', meta.cluster, { required: true }),
    identityProblem('operator', meta.operator, { required: true }),
    textProblem('reason', meta.reason, INPUT_LIMITS.reason),
    incidentIdProblem('incidentId', meta.incidentId),
  ].filter((p): p is string => p !== undefined);
}

/** The revoke runbook's own bounds (`--object`, `--accounts`, `--grants-file`, `--since/--until`). */
export const REVOKE_LIMITS = { objects: 20, accountPattern: 100, declaredAccounts: 200, grantsPerAccount: 100, grantLine: 500 } as const;

/**
 * `--accounts` is a LIKE pattern (`%`, `_`) on the user, or on `user@host`: matched by hand
 * (src/core/grants.ts likeMatch), never compiled into a regular expression.
 */
export function accountPatternProblem(field: string, value: unknown): string | undefined {
  return textProblem(field, value, REVOKE_LIMITS.accountPattern);
}

/** Everything a revoke run carries besides who and why; the same checks in the CLI and the workflow. */
export function revokeInputProblems(input: { objects?: unknown; accounts?: unknown; since?: unknown; until?: unknown; declared?: unknown; lock?: unknown }): (string | undefined)[] {
  const problems: (string | undefined)[] = [];
  const objects = input.objects;
  if (!Array.isArray(objects) || !objects.length) problems.push('objects: name at least one sensitive table, db.table');
  else if (objects.length > REVOKE_LIMITS.objects) problems.push(`objects: at most ${REVOKE_LIMITS.objects} tables, got ${objects.length}`);
  else for (const o of objects) problems.push(tableProblem('objects', o, { qualified: true }));
  problems.push(accountPatternProblem('accounts', input.accounts));
  for (const k of ['since', 'until'] as const) {
    const v = input[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) problems.push(`${k} must be a time (epoch ms), got ${String(v)}`);
  }
  if (input.until !== undefined && input.since === undefined) problems.push('until needs since: the report window starts at since');
  if (typeof input.since === 'number' && typeof input.until === 'number' && input.since > input.until) problems.push('since is after until: the report window is empty');
  if (input.declared !== undefined) {
    const d = input.declared;
    if (!Array.isArray(d)) problems.push('declared grants must be a list of accounts');
    else if (d.length > REVOKE_LIMITS.declaredAccounts) problems.push(`declared grants: at most ${REVOKE_LIMITS.declaredAccounts} accounts`);
    else {
      for (const a of d as { account?: unknown; grants?: unknown; roles?: unknown; defaultRole?: unknown }[]) {
        problems.push(textProblem('declared account', a?.account, 200, { required: true }));
        if (!Array.isArray(a?.grants) || a.grants.length > REVOKE_LIMITS.grantsPerAccount) problems.push(`declared ${String(a?.account)}: grants must be a list of at most ${REVOKE_LIMITS.grantsPerAccount}`);
        else for (const g of a.grants) problems.push(textProblem(`declared ${String(a.account)} grant`, g, REVOKE_LIMITS.grantLine, { required: true }));
        if (a?.roles !== undefined && (!Array.isArray(a.roles) || a.roles.length > 50 || a.roles.some((r) => textProblem('role', r, 128, { required: true })))) problems.push(`declared ${String(a?.account)}: roles must be a list of role names`);
        if (a?.defaultRole !== undefined && a.defaultRole !== null) problems.push(textProblem(`declared ${String(a?.account)} defaultRole`, a.defaultRole, 128));
      }
      if (!problems.some(Boolean)) problems.push(...declaredProblems(d as DeclaredAccount[]));
    }
  }
  if (input.lock !== undefined && typeof input.lock !== 'boolean') problems.push('lock must be true or false');
  return problems;
}
