/**
 * The `runbook` command (bin/runbook): the CLI program with every runbook's commands, as the
 * registry lists them (a runbook's definitions load only when its command or `--help` runs).
 */
import { runCli } from './cli/main';
import { RUNBOOKS } from './registry';

await runCli(RUNBOOKS);
