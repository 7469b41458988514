/** What every command's registration gets from the program: the config it was given, shared options. */
import { Option, type Command } from 'commander';
import { configPathFromEnv, loadConfig, type RunbookConfig } from '../config/load';

export interface CliContext {
  program: Command;
  /** The config the CLI was given (`-c`, else RUNBOOK_CONFIG, else the sandbox's). */
  config(): RunbookConfig;
  /** `--json`: machine-readable output. */
  json(): Option;
}

export function cliContext(program: Command): CliContext {
  return {
    program,
    config: () => loadConfig(program.opts().config ?? configPathFromEnv()),
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
