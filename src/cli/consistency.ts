/**
 * `runbook consistency …` and `runbook consistency-report …`: the commands; what they do is in
 * actions/consistency.ts, loaded when one runs (which also checks every bound: src/core/consistency.ts).
 */
import { Option } from 'commander';
import type { CliContext } from './context';

/** Digits only, read as a number (its range is checked with the other options when the command runs). */
const wholeNumber = (name: string) => (v: string) => {
  if (!/^[0-9]{1,16}$/.test(v)) throw new Error(`${name} must be a whole number, got "${v.slice(0, 40)}"`);
  return Number(v);
};
const seconds = (v: string) => {
  if (!/^[0-9]{1,3}(\.[0-9]{1,3})?$/.test(v)) throw new Error(`--chunk-seconds must be a number of seconds such as 0.5, got "${v.slice(0, 40)}"`);
  return Number(v);
};
const collect = (v: string, all: string[] = []) => [...all, v];

export function registerConsistencyCommands(ctx: CliContext): void {
  ctx.program
    .command('consistency <cluster>')
    .description('prove copies hold the same rows: replicas against their primary at one GTID position, or two sites (--source/--target); repair after approval')
    .option('--replica <name>', 'compare this replica (repeat for more; default: every replica, at any depth of the chain)', collect)
    .option('--all', 'compare every replica (the default)')
    .option('--source <[cluster/]instance>', 'across regions: the first of two instances no replication joins (the source of source-wins)')
    .option('--target <[cluster/]instance>', 'across regions: the second; each is read at its own snapshot (two points in time)')
    .option('--schema <db>', 'only this database')
    .option('--table <db.table>', 'only this table (db.table, or a name with --schema)')
    .option('--chunk-rows <n>', `fixed rows per chunk (default: sized to --chunk-seconds)`, wholeNumber('--chunk-rows'))
    .option('--chunk-seconds <s>', "time target of a chunk (default: the cluster's consistency.chunkSeconds, 0.5)", seconds)
    .option('--repair', 'repair the differences after approval (never the default)')
    .option('--policy <policy>', "repair policy for every table: source-wins | newest-wins:<timestamp column> | manual (default: the cluster's consistency.policies)")
    .addOption(new Option('--apply-on <where>', 'auto: each row where it must change (a replica unlogged, the primary logged); replicas: never write the primary').choices(['auto', 'replicas']))
    .option('--max-repair-rows <n>', 'refuse a repair writing more rows than this (default 10000): that is a reseed', wholeNumber('--max-repair-rows'))
    .option('--max-threads-running <n>', "wait while the primary runs more statements than this (default: the cluster's, 25)", wholeNumber('--max-threads-running'))
    .option('--dry-run', 'with --repair: check and show the repair plan, write nothing')
    .option('--reason <text>', 'why (goes to the audit log)')
    .requiredOption('--as <name>', 'who asks (the requester; may not approve their own repair)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is consistency-<cluster>-<incident>')
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, o) => {
      const { consistencyCommand } = await import('./actions/consistency');
      process.exitCode = await consistencyCommand(cluster, o);
    });

  ctx.program
    .command('consistency-report <workflowId>')
    .description('every difference a consistency run found, the repair plan for each row, and what was repaired (from the control database)')
    .addOption(ctx.json())
    .action(async (workflowId: string, o: { json?: boolean }) => {
      const { consistencyReport } = await import('./actions/consistency');
      await consistencyReport(workflowId, o);
    });
}
