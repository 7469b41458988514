/**
 * Loads and checks `runbooks/*.yaml`. Every problem is reported as `file: field.path: what was
 * expected`, all of them at once, and nothing is started with a config that has any.
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, resolve, basename } from 'node:path';
import { parseEnv } from 'node:util';
import YAML from 'yaml';
import { z } from 'zod';
import {
  configFileSchema,
  type ClusterConfig,
  type ControlConfig,
  type CredentialRef,
  type InstanceConfig,
} from '../core/configSchema';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface RunbookConfig {
  /** The YAML files this config was read from. */
  files: string[];
  control: ControlConfig;
  clusters: Record<string, ClusterConfig>;
  /** Absolute directory for the local sandbox's datadirs. */
  sandboxDir: string;
  /** Absolute directory for backups (one folder per backup, with its manifest) and archived binlogs. */
  backupDir: string;
  /** Where a restore's scratch servers listen, relative to the control port. */
  scratchPorts: { binlogServerOffset: number; recoveryOffset: number };
}

export const DEFAULT_CONFIG_PATH = 'runbooks/sandbox.yaml';

/** The config named by RUNBOOK_CONFIG (a file or a directory of *.yaml), else the sandbox. */
export function configPathFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.RUNBOOK_CONFIG || DEFAULT_CONFIG_PATH);
}

const SECRET_KEY = /^(password|passwd|pass|pwd|secret|token)$/i;

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(top level)';
}

/** Literal secrets are refused by name, so the message can say what to write instead. */
function findLiteralSecrets(node: unknown, path: PropertyKey[] = []): string[] {
  if (Array.isArray(node)) return node.flatMap((v, i) => findLiteralSecrets(v, [...path, i]));
  if (node && typeof node === 'object') {
    return Object.entries(node).flatMap(([k, v]) =>
      SECRET_KEY.test(k)
        ? [`${formatPath([...path, k])}: a literal password is not allowed; use passwordEnv: <ENV_VAR_NAME>`]
        : findLiteralSecrets(v, [...path, k]),
    );
  }
  return [];
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type') {
    return `expected ${issue.expected}${issue.message.includes('received') ? `, ${issue.message.split(', ').pop()}` : ''}`;
  }
  return issue.message.replace(/^Invalid (string|input): /, 'expected ');
}

function readOneFile(file: string): z.infer<typeof configFileSchema> {
  let raw: unknown;
  try {
    const doc = YAML.parseDocument(readFileSync(file, 'utf8'), { prettyErrors: true });
    if (doc.errors.length) throw new Error(doc.errors[0]!.message.split('\n')[0]);
    raw = doc.toJS() ?? {};
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message}`);
  }
  const problems = findLiteralSecrets(raw);
  const parsed = configFileSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const message = `${formatPath(issue.path)}: ${describeIssue(issue)}`;
      if (!problems.some((p) => p.startsWith(formatPath(issue.path)))) problems.push(message);
    }
  }
  if (problems.length) throw new ConfigError(problems.map((p) => `${file}: ${p}`).join('; '));
  return parsed.data!;
}

/**
 * The same server however it is written: host names compare case-insensitively, and the loopback
 * names and addresses (localhost, 127.0.0.1, ::1) are one host, so `localhost:23101` beside
 * `127.0.0.1:23101` is caught as the server it is.
 */
export function serverKey(host: string, port: number): string {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  const loopback = ['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback', '127.0.0.1', '::1', '0:0:0:0:0:0:0:1'].includes(h);
  return `${loopback ? 'loopback' : h}:${port}`;
}

/** Names that say a command-line word or variable carries a secret. */
const SECRET_WORD = /(password|passwd|pwd|secret|token|api_?key)/i;
const MYSQL_TOOL = /(^|\/)(mysql|mariadb)[a-z-]*$/;

/**
 * Whether a hook command holds a literal secret (hooks run with /bin/sh -c, and the command is in
 * the config and in process lists): `--password=x`, `-px` after a mysql/mariadb tool, `X_TOKEN=x`,
 * `scheme://user:x@`. A reference to a variable (`$X`) is fine. Word by word, no backtracking.
 */
export function commandSecret(command: string): string | undefined {
  const words = command.split(/[\s;|&]+/).filter(Boolean);
  const literal = (v: string | undefined) => v !== undefined && v !== '' && !/^["']?\$/.test(v) && !v.startsWith('-');
  let mysql = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (MYSQL_TOOL.test(w)) mysql = true;
    if (mysql && /^-p./.test(w) && literal(w.slice(2))) return '-p…';
    const option = /^--?([A-Za-z][A-Za-z0-9_-]*)(?:=(.*))?$/.exec(w);
    if (option && SECRET_WORD.test(option[1]!)) {
      if (option[2] !== undefined ? literal(option[2]) : !mysql && literal(words[i + 1])) return `${w.split('=')[0]} …`;
      continue; // mysql's bare --password prompts; the next word is not its value
    }
    const assignment = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(w);
    if (assignment && SECRET_WORD.test(assignment[1]!) && literal(assignment[2])) return `${assignment[1]}=…`;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/@:]+:[^/@]+@/.test(w)) return 'user:…@ in a URL';
  }
  return undefined;
}

/** Cross-field rules a schema cannot express: regions exist, ports and names are unique, one primary. */
function checkCluster(file: string, clusterName: string, cluster: ClusterConfig, seenAddresses: Map<string, string>): string[] {
  const problems: string[] = [];
  const at = (path: string) => `${file}: clusters.${clusterName}.${path}`;
  const names = new Set<string>();
  cluster.instances.forEach((inst, i) => {
    if (!cluster.regions.includes(inst.region)) {
      problems.push(`${at(`instances[${i}].region`)}: unknown region "${inst.region}", expected one of ${cluster.regions.join(', ')}`);
    }
    if (names.has(inst.name)) problems.push(`${at(`instances[${i}].name`)}: duplicate instance name "${inst.name}"`);
    names.add(inst.name);
    const address = serverKey(inst.host, inst.port);
    const other = seenAddresses.get(address);
    if (other) problems.push(`${at(`instances[${i}].port`)}: duplicate port ${inst.port} on ${inst.host}, already used by ${other}`);
    seenAddresses.set(address, `${clusterName}/${inst.name}`);
  });
  const r = cluster.recovery;
  if (r) {
    if (!cluster.regions.includes(r.region)) problems.push(`${at('recovery.region')}: unknown region "${r.region}", expected one of ${cluster.regions.join(', ')}`);
    if (names.has(r.name)) problems.push(`${at('recovery.name')}: "${r.name}" is an instance of the cluster; a recovery host is a separate server, never production`);
    const other = seenAddresses.get(serverKey(r.host, r.port));
    if (other) problems.push(`${at('recovery.port')}: ${r.host}:${r.port} is ${other}; a restore would wipe it: a recovery host must be a separate server`);
    seenAddresses.set(serverKey(r.host, r.port), `${clusterName}/${r.name} (recovery host)`);
  }
  for (const kind of ['traffic', 'fencing'] as const) {
    cluster[kind].hooks.forEach((h, i) => {
      const secret = commandSecret(h.command);
      if (secret) problems.push(`${at(`${kind}.hooks[${i}].command`)}: holds a literal secret (${secret}); read it from an environment variable instead`);
    });
  }
  for (const side of ['sourceCommand', 'targetCommand'] as const) {
    const secret = commandSecret(cluster.reseed?.physical?.[side].join(' ') ?? '');
    if (secret) problems.push(`${at(`reseed.physical.${side}`)}: holds a literal secret (${secret}); name a defaults file the tool reads instead`);
  }
  // One person per Slack user, address and login: else a click or a login would be two people.
  for (const key of ['name', 'slack', 'email', 'login'] as const) {
    const seen = new Map<string, number>();
    cluster.people.forEach((p, i) => {
      const value = p[key]?.toLowerCase();
      if (value === undefined) return;
      if (seen.has(value)) problems.push(`${at(`people[${i}].${key}`)}: "${p[key]}" is also people[${seen.get(value)}]'s: each person needs their own`);
      else seen.set(value, i);
    });
  }
  const primaries = cluster.instances.filter((i) => i.role === 'primary');
  if (primaries.length !== 1) {
    problems.push(`${at('instances')}: expected exactly one instance with role: primary, found ${primaries.length}`);
  }
  return problems;
}

function yamlFilesIn(path: string): string[] {
  if (!existsSync(path)) throw new ConfigError(`${path}: no such config file or directory`);
  if (!statSync(path).isDirectory()) return [path];
  const files = readdirSync(path)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(path, f));
  if (!files.length) throw new ConfigError(`${path}: directory holds no *.yaml config`);
  return files;
}

/** Fill unset environment variables from a dotenv file (sandbox passwords); never overrides. */
function applyEnvFile(file: string, env: NodeJS.ProcessEnv): void {
  if (!existsSync(file)) throw new ConfigError(`${file}: envFile not found`);
  for (const [key, value] of Object.entries(parseEnv(readFileSync(file, 'utf8')))) {
    if (env[key] === undefined) env[key] = value;
  }
}

export function loadConfig(path: string = configPathFromEnv(), env: NodeJS.ProcessEnv = process.env): RunbookConfig {
  const files = yamlFilesIn(resolve(path));
  const problems: string[] = [];
  const clusters: Record<string, ClusterConfig> = {};
  const seenAddresses = new Map<string, string>();
  let control: ControlConfig | undefined;
  let controlFile: string | undefined;
  let sandboxDir: string | undefined;
  let backupDir: string | undefined;
  let scratchPorts = { binlogServerOffset: 10, recoveryOffset: 11 };

  for (const file of files) {
    const data = readOneFile(file);
    if (data.envFile) applyEnvFile(resolve(dirname(file), data.envFile), env);
    if (data.sandboxDir) sandboxDir = resolve(dirname(file), data.sandboxDir);
    if (data.backupDir) backupDir = resolve(dirname(file), data.backupDir);
    if (data.scratchPorts) scratchPorts = data.scratchPorts;
    if (data.control) {
      if (controlFile) problems.push(`${file}: control: already defined in ${controlFile}`);
      control = data.control;
      controlFile = file;
      seenAddresses.set(serverKey(control.host, control.port), 'control');
    }
    for (const [clusterName, cluster] of Object.entries(data.clusters)) {
      if (clusters[clusterName]) problems.push(`${file}: clusters.${clusterName}: cluster defined twice`);
      clusters[clusterName] = cluster;
      problems.push(...checkCluster(file, clusterName, cluster, seenAddresses));
    }
  }
  if (!control) problems.push(`${files.join(', ')}: control: missing; expected the control database (host, port, database, credentials)`);
  if (problems.length) throw new ConfigError(problems.join('; '));
  const sandbox = sandboxDir ?? resolve(dirname(files[0]!), '..', '.sandbox', basename(files[0]!).replace(/\.ya?ml$/, ''));
  return { files, control: control!, clusters, sandboxDir: sandbox, backupDir: backupDir ?? resolve(dirname(sandbox), 'backups'), scratchPorts };
}

export function getCluster(config: RunbookConfig, clusterName: string): ClusterConfig {
  const cluster = config.clusters[clusterName];
  if (!cluster) {
    const known = Object.keys(config.clusters);
    throw new ConfigError(`unknown cluster "${clusterName}"; known: ${known.length ? known.join(', ') : '(none)'}`);
  }
  return cluster;
}

/**
 * An instance of the cluster by name, its recovery host included (once a `promote` cut-over has
 * made that the primary, failover, probes and traffic reach it by name like any member).
 */
export function getInstance(config: RunbookConfig, clusterName: string, instanceName: string): InstanceConfig {
  const cluster = getCluster(config, clusterName);
  const inst = cluster.instances.find((i) => i.name === instanceName) ?? (cluster.recovery?.name === instanceName ? recoveryAsInstance(cluster) : undefined);
  if (!inst) {
    const known = [...cluster.instances.map((i) => i.name), ...(cluster.recovery ? [`${cluster.recovery.name} (recovery host)`] : [])];
    throw new ConfigError(`cluster "${clusterName}" has no instance "${instanceName}"; known: ${known.join(', ')}`);
  }
  return inst;
}

/** The recovery host seen as an instance: never a failover candidate until an operator says so. */
export function recoveryAsInstance(cluster: ClusterConfig): InstanceConfig | undefined {
  const r = cluster.recovery;
  return r && { name: r.name, region: r.region, host: r.host, port: r.port, serverId: r.serverId, role: 'replica', promotion: 'never' };
}

/** Resolve a credential reference at the moment of use; the password goes no further than the caller. */
export function resolveCredential(ref: CredentialRef, env: NodeJS.ProcessEnv = process.env): { user: string; password: string } {
  const password = env[ref.passwordEnv];
  if (password === undefined) {
    throw new ConfigError(`environment variable ${ref.passwordEnv} (password of MySQL user "${ref.user}") is not set`);
  }
  return { user: ref.user, password };
}
