/**
 * The `runbook` command (bin/runbook): the CLI program with every runbook's commands, as the
 * registry lists them (each loaded only when the CLI starts, never more than the registry names).
 */
import { runCli } from './cli/main';
import { RUNBOOKS } from './registry';

const commands = await Promise.all(RUNBOOKS.flatMap((r) => (r.cli ? [r.cli()] : [])));
await runCli(commands);
