/**
 * The shape of `runbooks/*.yaml`. Everything an operator can misconfigure is checked here, before a
 * runbook starts, so a typo is a one-line error at the terminal rather than a surprise mid-failover.
 */
import { z } from 'zod';
import { INPUT_LIMITS, NAME_FORMAT } from './inputs';
import { parsePolicy, POLICY_FORMAT } from './consistency';

const name = z.string().regex(NAME_FORMAT, 'a lower-case name: letters, digits, "-" or "_", starting with a letter');

/** A host name or an IP address, nothing else: a user, a password or a port has its own field. */
const host = z
  .string()
  .max(255)
  .regex(/^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9._:-]{1,255})$/, 'a host name or IP address (no user, password, port or URL)')
  // One colon is name:port (an IPv6 address has at least two): the port has its own field.
  .refine((h) => h.split(':').length !== 2, 'a host name or IP address without a port (the port has its own field)');

/** A person as the audit names them: fits failover_log.operator. */
const identity = z.string().min(1).max(INPUT_LIMITS.identity, `at most ${INPUT_LIMITS.identity} characters (failover_log.operator)`);

const envVarName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'the NAME of an environment variable (upper case), never the secret itself');

/**
 * A credential is a user plus the name of the environment variable holding its password. The
 * password itself never appears in a file, a workflow input or Temporal history: activities
 * resolve it from their own environment at the moment they connect.
 */
export const credentialRef = z.strictObject({
  user: z.string().min(1),
  passwordEnv: envVarName,
});

const duration = z.number().positive();

export const instanceSchema = z.strictObject({
  name,
  region: name,
  host,
  port: z.number().int().min(1).max(65535),
  /** Sandbox wiring only: which instance starts as primary. At run time roles are discovered. */
  role: z.enum(['primary', 'replica']).default('replica'),
  /** orchestrator-style promotion rule: `prefer` candidates win ties, `never` are never promoted. */
  promotion: z.enum(['prefer', 'neutral', 'never']).default('neutral'),
  serverId: z.number().int().min(1).max(4294967295).optional(),
  /**
   * The address its replicas replicate from, when the engine reaches it by another (a proxy, a
   * separate replication network): SHOW REPLICA STATUS names this one, and the probe must still
   * recognise the instance. Default: host and port above.
   */
  replicationAddress: z.strictObject({ host, port: z.number().int().min(1).max(65535) }).optional(),
});

/** Where an approval may come from; how each verifies who decides is in README's security section. */
export const APPROVAL_CHANNELS = ['slack', 'email', 'cli'] as const;
export type ApprovalChannel = (typeof APPROVAL_CHANNELS)[number];

export const approvalRuleSchema = z.strictObject({
  mode: z.enum(['auto', 'required']),
  approvers: z.array(identity).default([]),
  /** The channels a decision may come through; others are refused (and logged). */
  channels: z.array(z.enum(APPROVAL_CHANNELS)).min(1).default([...APPROVAL_CHANNELS]),
  /** The requester may not approve their own run. */
  fourEyes: z.boolean().default(true),
  timeoutMinutes: duration.default(15),
  remindEveryMinutes: duration.default(5),
});

/** Approval policy per runbook, then per mode (`planned`, `emergency`, or `default`). */
export const approvalPolicySchema = z.record(name, z.record(name, approvalRuleSchema));

export const trafficHookSchema = z.strictObject({
  name,
  /** Run with /bin/sh -c; receives RUNBOOK_* environment variables (see README). */
  command: z.string().min(1),
  timeoutSeconds: duration.default(30),
  /** What a failing hook does to the runbook: stop it, or log and continue. */
  onFailure: z.enum(['abort', 'continue']).default('abort'),
  /**
   * Variables of the worker's environment this hook also gets, by name. Nothing else of it is
   * passed on (PATH, HOME, the locale and TZ aside): no credential reaches a hook unless listed.
   */
  env: z.array(envVarName).default([]),
});

export const notifySchema = z.strictObject({
  slack: z.strictObject({ channel: z.string().min(1) }).optional(),
  email: z.strictObject({ to: z.array(z.email()).min(1) }).optional(),
  /** Who to call, for the incident notices (seed §7.3 "contact"). */
  contact: z.string().optional(),
});

/**
 * People who may act on this cluster's runbooks, and how each channel knows them: a click from
 * Slack user U… or an emailed link to alice@… becomes the approver identity `alice`.
 */
export const personSchema = z.strictObject({
  name: identity,
  slack: z.string().regex(/^[UW][A-Z0-9]{1,31}$/, 'a Slack user id such as U012ABCDEF').optional(),
  email: z.email().optional(),
  /** Their OS login on the hosts the CLI runs on: a CLI approval's identity (see `cliIdentity`). */
  login: z.string().regex(/^[a-z_][a-z0-9_.-]{0,63}$/, 'an OS login name such as alice').optional(),
});

export const thresholdsSchema = z.strictObject({
  maxLagSeconds: z.number().min(0).default(5),
  catchUpTimeoutSeconds: duration.default(30),
  probeTimeoutSeconds: duration.default(3),
  /** Past a promotion, how long a step is retried on its own before the run stops in needs_attention. */
  rollForwardMinutes: duration.default(10),
  /** While such a step is retried, people are reminded this often. */
  rollForwardRemindMinutes: duration.default(1),
  /** Emergency: failed probes of the primary, this far apart, before its failure is confirmed. */
  confirmProbes: z.number().int().min(1).max(20).default(3),
  confirmIntervalMs: z.number().int().min(100).max(60_000).default(1000),
  /**
   * Emergency started by the monitor: a confirmation of the dead primary at most this old replaces
   * all but one of the confirm probes (0: never; see confirmationProbes).
   */
  monitorConfirmationSeconds: z.number().min(0).max(300).default(10),
  /** Emergency: how long the replicas' IO threads get to notice the primary is gone. */
  replicaGraceSeconds: duration.default(15),
  /** After a promotion: how long the heartbeat write may take to reach every replica. */
  verifyTimeoutSeconds: duration.default(30),
  /** A restore's replay of the archived binlogs, before it is called stuck. */
  replayTimeoutSeconds: duration.default(6 * 3600),
});

/**
 * A server the restore runbook may wipe and load a backup into, instead of a scratch instance on
 * the worker's host: a real machine with production-sized disks, which the `promote` cut-over can
 * then make the cluster's primary. Never one of the cluster's instances (checked at load).
 */
export const recoveryHostSchema = z.strictObject({
  name,
  region: name,
  host,
  port: z.number().int().min(1).max(65535),
  serverId: z.number().int().min(1).max(4294967295).optional(),
  /**
   * The address of the worker's host as this server reaches it: SQL-thread replay makes it
   * replicate from a throwaway binlog server the worker starts there. Default: same host.
   */
  binlogServerHost: host.default('127.0.0.1'),
});

/** The consistency runbook's settings: a repair policy per table (`db.table`, or `db.*` for a schema) and its limits. */
export const consistencySchema = z.strictObject({
  policies: z
    .record(
      z.string().regex(/^[A-Za-z0-9_$]{1,64}\.([A-Za-z0-9_$]{1,64}|\*)$/, 'db.table or db.*'),
      z.string().refine((p) => !('problem' in parsePolicy(p)), `a repair policy: ${POLICY_FORMAT}`),
    )
    .default({}),
  /** Chunks wait while the primary runs more statements than this (pt-table-checksum's --max-load Threads_running=25). */
  maxThreadsRunning: z.number().int().min(1).max(100_000).default(25),
  /** Time target of one chunk (pt-table-checksum's --chunk-time). */
  chunkSeconds: z.number().min(0.05).max(60).default(0.5),
});

/**
 * The monitor (src/workflows/monitor.ts): how often it probes, how many missed rounds before a
 * primary can be declared dead, and what it does then. `auto` starts the emergency failover (whose
 * own approval and fencing rules still apply); `notify` pages a human; `off` only records.
 */
export const monitorSchema = z.strictObject({
  /** Seconds between rounds of probes (the seed's 30 s is the ceiling, not the goal). */
  intervalSeconds: z.number().min(0.5).max(30).default(5),
  /** Consecutive rounds the primary must miss (and every replica must have lost it) before it is dead. */
  failureThreshold: z.number().int().min(1).max(100).default(3),
  autoFailover: z.enum(['off', 'notify', 'auto']).default('notify'),
  /**
   * Monitor workers in other regions (each polling its own task queue) that must agree, by probing
   * from where they are, before the monitor acts on a dead primary; every vote is logged. An
   * observer that does not answer within `observerTimeoutSeconds` is no agreement: no automatic
   * failover, a page.
   */
  observers: z
    .array(z.strictObject({ region: name, taskQueue: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'a task queue name: letters, digits, . _ -') }))
    .max(5)
    .default([]),
  observerTimeoutSeconds: z.number().min(1).max(60).default(10),
});

/** Placeholders a reseed command template may use; the engine fills them per run. */
export const RESEED_PLACEHOLDERS = ['cluster', 'sourceInstance', 'sourceHost', 'sourcePort', 'sourceDatadir', 'targetInstance', 'targetHost', 'targetPort', 'targetDatadir', 'engineDir'] as const;

/** One argv word of a template: bounded, and only the known `{placeholders}`. */
const templateWord = z
  .string()
  .min(1)
  .max(4096)
  .refine((w) => [...w.matchAll(/\{([A-Za-z]+)\}/g)].every((m) => (RESEED_PLACEHOLDERS as readonly string[]).includes(m[1]!)), `only the placeholders {${RESEED_PLACEHOLDERS.join('}, {')}}`);

/**
 * reseed-physical: `sourceCommand`'s stdout (an mbstream of `mariadb-backup --backup
 * --stream=mbstream`, run where the source's datadir is) is piped into `targetCommand`'s stdin
 * (run where the target's datadir is: stop the instance, clear its datadir, `mbstream -x`,
 * `mariadb-backup --prepare`, start it read-only). The target prints `cleared` on a line of its own
 * once the datadir is cleared, and the content of `xtrabackup_binlog_info` as its last line.
 * Argv lists, never a shell line; credentials in a defaults file the template names, never on argv.
 */
export const reseedPhysicalSchema = z.strictObject({
  sourceCommand: z.array(templateWord).min(1).max(64),
  targetCommand: z.array(templateWord).min(1).max(64),
  timeoutMinutes: z.number().int().min(1).max(24 * 60).default(360),
});

export const clusterSchema = z.strictObject({
  description: z.string().optional(),
  locale: z.enum(['en', 'zh-CN']).default('en'),
  regions: z.array(name).min(1),
  credentials: z.strictObject({
    admin: credentialRef,
    replication: credentialRef,
  }),
  instances: z.array(instanceSchema).min(1),
  thresholds: thresholdsSchema.default(thresholdsSchema.parse({})),
  approval: approvalPolicySchema.default({}),
  traffic: z.strictObject({ hooks: z.array(trafficHookSchema).default([]) }).default({ hooks: [] }),
  fencing: z.strictObject({ hooks: z.array(trafficHookSchema).default([]) }).default({ hooks: [] }),
  notify: notifySchema.default({}),
  people: z.array(personSchema).default([]),
  /**
   * Who a CLI decision (and a CLI-started run's requester) is: `login`, the OS login mapped through
   * `people[].login` (a `--as` naming someone else is refused); `declared`, whatever `--as` says
   * (a sandbox or a drill, never production: four-eyes then rests on honesty).
   */
  cliIdentity: z.enum(['login', 'declared']).default('login'),
  recovery: recoveryHostSchema.optional(),
  consistency: consistencySchema.default(consistencySchema.parse({})),
  monitor: monitorSchema.default(monitorSchema.parse({})),
  /** How reseed-physical copies a member (absent: reseed-physical is refused before approval). */
  reseed: z.strictObject({ physical: reseedPhysicalSchema.optional() }).optional(),
});

export const controlSchema = z.strictObject({
  host,
  port: z.number().int().min(1).max(65535),
  database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain database name'),
  credentials: credentialRef,
});

export const configFileSchema = z.strictObject({
  /**
   * A dotenv file, relative to this YAML file, whose values fill environment variables that are
   * not already set. Meant for the local sandbox's throwaway passwords only.
   */
  envFile: z.string().optional(),
  /** Where the local sandbox keeps its datadirs (relative to this file); sandbox configs only. */
  sandboxDir: z.string().optional(),
  /** Where backups and archived binlogs go (relative to this file); default beside the sandbox. */
  backupDir: z.string().optional(),
  /**
   * A restore's scratch servers on the worker's host listen on the control port plus these (the
   * binlog server that serves the archive, and the default recovery instance).
   */
  scratchPorts: z.strictObject({ binlogServerOffset: z.number().int().min(1).max(1000).default(10), recoveryOffset: z.number().int().min(1).max(1000).default(11) }).default({ binlogServerOffset: 10, recoveryOffset: 11 }),
  control: controlSchema.optional(),
  clusters: z.record(name, clusterSchema).default({}),
});

export type CredentialRef = z.infer<typeof credentialRef>;
export type InstanceConfig = z.infer<typeof instanceSchema>;
export type RecoveryHostConfig = z.infer<typeof recoveryHostSchema>;
export type ApprovalRule = z.infer<typeof approvalRuleSchema>;
export type TrafficHook = z.infer<typeof trafficHookSchema>;
export type Person = z.infer<typeof personSchema>;
export type ClusterConfig = z.infer<typeof clusterSchema>;
export type Thresholds = z.infer<typeof thresholdsSchema>;
export type MonitorConfig = z.infer<typeof monitorSchema>;
export type ControlConfig = z.infer<typeof controlSchema>;
export type ConfigFile = z.infer<typeof configFileSchema>;
