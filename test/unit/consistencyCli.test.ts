/**
 * `runbook consistency`'s options: bounded before anything starts, in one line each; the same
 * bounds the workflow checks itself (consistencyOptionProblems), and the config's policies.
 */
import { describe, expect, it } from 'vitest';
import { consistencyOptionsOf, type ConsistencyCliOptions } from '../../src/cli/actions/consistency';
import { consistencyOptionProblems } from '../../src/core/consistency';
import { consistencySchema } from '../../src/core/configSchema';

const base: ConsistencyCliOptions = { as: 'alice' };

describe('runbook consistency options', () => {
  it('takes replicas, or two sites, and the repair options', () => {
    expect(consistencyOptionsOf('orders', { ...base, replica: ['orders-b'], schema: 'shop', chunkRows: 5000 })).toMatchObject({ replicas: ['orders-b'], schema: 'shop', chunkRows: 5000 });
    expect(consistencyOptionsOf('orders', { ...base, source: 'orders-a', target: 'orders/orders-c', table: 'shop.orders' })).toMatchObject({ between: { source: 'orders-a', target: 'orders/orders-c' }, table: 'shop.orders' });
    expect(consistencyOptionsOf('orders', { ...base, repair: true, policy: 'newest-wins:updated_at', applyOn: 'replicas', dryRun: true })).toMatchObject({ repair: true, policy: 'newest-wins:updated_at', applyOn: 'replicas' });
  });

  it('refuses what does not fit, in one line, before anything starts', () => {
    const refused = (o: Partial<ConsistencyCliOptions>, message: string | RegExp) => expect(() => consistencyOptionsOf('orders', { ...base, ...o })).toThrow(message);
    refused({ replica: ['orders-b'], all: true }, '--replica and --all');
    refused({ source: 'orders-a' }, 'name both instances: --source and --target');
    refused({ source: 'orders-a', target: 'orders-c', replica: ['orders-b'] }, 'one or the other');
    refused({ replica: ['orders-z'] }, /orders-z/);
    refused({ source: 'orders-a', target: 'other/orders-c' }, /other/);
    refused({ policy: 'source-wins' }, 'a policy goes with --repair');
    refused({ repair: true, policy: 'target-wins' }, 'a repair policy is source-wins, newest-wins:<timestamp column> or manual');
    refused({ repair: true, policy: 'newest-wins:updated at' }, 'newest-wins needs the timestamp column');
    refused({ dryRun: true }, '--dry-run goes with --repair');
    refused({ table: 'orders' }, 'a table name alone needs its schema');
    refused({ table: 'a.b.c' }, 'table must be db.table');
    refused({ schema: 'shop', table: 'other.orders' }, 'is not in schema shop');
    refused({ schema: 'sh op' }, 'schema must be a database name');
    refused({ as: 'x'.repeat(65) }, '--as is 65 characters long; at most 64');
    refused({ reason: 'a\nb' }, '--reason holds a control character');
    refused({ incident: 'bad id' }, '--incident "bad id" is not an incident id');
    refused({ source: 'orders-a', target: 'orders-c', repair: true, applyOn: 'replicas' }, '--apply-on replicas is for replicas of one primary');
  });

  it('the workflow refuses the same on its own (a client may start it without the CLI)', () => {
    expect(consistencyOptionProblems({ chunkRows: 0, chunkSeconds: 100, maxRepairRows: 1.5, batchChunks: -1, replicas: ['x/y'], between: { source: '', target: 'a' } as never })).toEqual([
      'replica "x/y" is not an instance name',
      'the source instance must be a name or cluster/name, got ""',
      'compare either replicas with their primary or two instances across regions, not both',
      'chunkRows must be a whole number from 1 to 1000000, got 0',
      'chunkSeconds must be from 0.05 to 60, got 100',
      'maxRepairRows must be a whole number from 1 to 10000000, got 1.5',
      'batchChunks must be a whole number from 1 to 10000, got -1',
    ]);
    expect(consistencyOptionProblems({})).toEqual([]);
  });

  it('config: policies per table or schema, checked at load', () => {
    expect(consistencySchema.parse({ policies: { 'shop.orders': 'newest-wins:updated_at', 'shop.*': 'manual' } })).toMatchObject({ maxThreadsRunning: 25, chunkSeconds: 0.5 });
    expect(() => consistencySchema.parse({ policies: { 'shop.orders': 'last-write-wins' } })).toThrow(/a repair policy/);
    expect(() => consistencySchema.parse({ policies: { shop: 'manual' } })).toThrow(/db.table or db/);
  });
});
