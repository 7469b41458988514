/**
 * The bounds of everything an operator types, checked at every edge: the CLI before it starts
 * anything, the approval endpoint before it forwards a decision, and the workflows themselves
 * before their first step (a client can start a workflow without the CLI). Each check returns a
 * one-line problem naming the field and what was expected, or undefined; callers turn it into their
 * own kind of refusal. Workflow-safe: no I/O, and no regular expression here can backtrack (each is
 * a single character class with a bounded count, tested after the length).
 */
/**
 * The sizes of the failover_log columns that operator input lands in (`--reason`, `--as`,
 * `--incident`, approver names, step names). The control schema (control/migrations.ts) creates the table from these, and the edge
 * limits (this file) and the audit writer's last-resort truncation are derived from
 * them: one definition, so a value the CLI accepts always fits the column it is written to.
 */
export const FAILOVER_LOG_COLUMNS = {
  from_region: 32,
  to_region: 32,
  operator: 64,
  reason: 255,
  status: 16,
  cluster: 64,
  incident_id: 64,
  workflow_id: 255,
  run_id: 64,
  runbook: 32,
  step: 128,
} as const;
const COLUMN = FAILOVER_LOG_COLUMNS;

/** How long each free-text input may be, in characters: the column it is written to. */
/** How far `runbook log` pages: the highest page number and the most rows on one. */
export const LOG_PAGES = { page: 1_000_000_000, pageSize: 1000 } as const;

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
