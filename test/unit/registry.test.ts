/**
 * The registry (src/registry.ts) is what the worker, the CLI and the README follow: every workflow
 * the worker bundles is a runbook's, every activity group is used, no activity name is defined
 * twice, and every runbook command is in the README's command table.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { activityOwners, mergeActivityGroups } from '../../src/activities';
import { loadConfig } from '../../src/config/load';
import { Command } from 'commander';
import { commandWord, runbooksToLoad } from '../../src/cli/main';
import { cliContext } from '../../src/cli/context';
import { COMMON_ACTIVITY_GROUPS, RUNBOOKS } from '../../src/registry';
import * as workflows from '../../src/workflows';

describe('the runbook registry', () => {
  it('lists exactly the workflows the worker registers', () => {
    expect(RUNBOOKS.flatMap((r) => r.workflows).sort()).toEqual(Object.keys(workflows).sort());
  });

  it('uses every activity group, and no activity name is defined by two groups', () => {
    const owners = activityOwners({ config: loadConfig('runbooks/sandbox.yaml') });
    const groups = new Set(Object.values(owners));
    const used = new Set([...COMMON_ACTIVITY_GROUPS, ...RUNBOOKS.flatMap((r) => r.activities)]);
    expect([...groups].filter((g) => !used.has(g))).toEqual([]);
    expect([...used].filter((g) => !groups.has(g))).toEqual([]);
    expect(() => mergeActivityGroups({ mysql: { fenceOldPrimary: async () => 1 }, traffic: { fenceOldPrimary: async () => 2 } })).toThrow(
      'activity "fenceOldPrimary" is defined by both the mysql and the traffic activities',
    );
  });

  it("puts every runbook command in the README's command table", () => {
    const readme = readFileSync('README.md', 'utf8');
    const table = readme.slice(readme.indexOf('## The `runbook` CLI'), readme.indexOf('## Architecture'));
    for (const command of RUNBOOKS.flatMap((r) => r.commands)) expect(table, command).toMatch(new RegExp(`\\| \`${command}[ \`]`));
  });

  // The CLI loads a runbook's definitions only for its own commands: a command missing from
  // `commands` would still run (unknown words load every runbook), but one listed by two runbooks
  // or registered by none would not be where the CLI looks.
  it('names in `commands` exactly what each runbook registers in the CLI', async () => {
    for (const r of RUNBOOKS) {
      const program = new Command('runbook');
      if (r.cli) (await r.cli())(cliContext(program));
      expect(program.commands.map((c) => c.name()).sort(), r.name).toEqual([...r.commands].sort());
    }
    const all = RUNBOOKS.flatMap((r) => r.commands);
    expect(new Set(all).size).toBe(all.length);
  });

  it('loads no runbook for a built-in command, the owner for its command, every one for help or an unknown word', () => {
    expect(commandWord(['status', 'x'])).toBe('status');
    expect(commandWord(['-c', 'failover', 'status'])).toBe('status');
    expect(commandWord(['--config', 'a.yaml', 'failover', '--help'])).toBe('failover');
    expect(commandWord(['--config=a.yaml', '--help'])).toBeUndefined();
    const names = (rs: typeof RUNBOOKS) => rs.map((r) => r.name);
    const withCli = names(RUNBOOKS.filter((r) => r.cli));
    expect(runbooksToLoad(RUNBOOKS, 'status', ['status', 'log'])).toEqual([]);
    expect(names(runbooksToLoad(RUNBOOKS, 'failover', ['status']))).toEqual(['failover']);
    expect(names(runbooksToLoad(RUNBOOKS, undefined, ['status']))).toEqual(withCli);
    expect(names(runbooksToLoad(RUNBOOKS, 'statsu', ['status']))).toEqual(withCli);
  });
});
