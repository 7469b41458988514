/**
 * What every command's registration gets from the program: the config it was given, shared options.
 *
 * Registration must stay light: `runbook --help` loads only commander and the command definitions.
 * What a command does lives in src/cli/actions/ and is imported when the command runs, and so is the
 * config (YAML and its schema): test/unit/cliStartup.test.ts checks nothing heavier loads at start.
 */
import { Option, type Command } from 'commander';
import type { RunbookConfig } from '../config/load';
import type { ClusterConfig } from '../core/configSchema';

export interface CliContext {
  program: Command;
  /** The config the CLI was given (`-c`, else RUNBOOK_CONFIG, else the sandbox's). */
  config(): Promise<RunbookConfig>;
  /** One of its clusters; an unknown name is refused in one line, before anything starts. */
  cluster(name: string): Promise<ClusterConfig>;
  /** `--json`: machine-readable output. */
  json(): Option;
}

export function cliContext(program: Command): CliContext {
  const config = async () => {
    const { configPathFromEnv, loadConfig } = await import('../config/load');
    return loadConfig(program.opts().config ?? configPathFromEnv());
  };
  return {
    program,
    config,
    cluster: async (name) => (await import('../config/load')).getCluster(await config(), name),
    json: () => new Option('--json', 'machine-readable output'),
  };
}

/** A whole number from 1 to `max`, read digit by digit (Number('1e3') or 20 nines would slip through). */
export const positiveInt = (name: string, max: number) => (v: string) => {
  const n = /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got "${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`);
  return n;
};

export const PORT_MAX = 65535;
