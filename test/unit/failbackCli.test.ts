/** `runbook failback` bounds its input before it reads a config or starts anything. */
import { describe, expect, it } from 'vitest';
import { startFailback } from '../../src/cli/actions/failback';

const base = { cluster: 'orders', instance: 'orders-a', reason: 'bring it back', as: 'alice' };

describe('failback CLI input', () => {
  it('refuses a bad instance, method or incident in one line', async () => {
    await expect(startFailback({ ...base, instance: 'Orders A' })).rejects.toThrow(/^--instance "Orders A" is not a name: a lower-case letter, then letters, digits, "-" or "_"$/);
    await expect(startFailback({ ...base, method: 'yolo' as never })).rejects.toThrow(/^--method must be one of auto, rejoin, flashback, reseed-logical, reseed-physical, got "yolo"$/);
    await expect(startFailback({ ...base, incident: 'a b' })).rejects.toThrow(/^--incident "a b" is not an incident id/);
    await expect(startFailback({ ...base, instance: 'x'.repeat(100) })).rejects.toThrow(/^--instance is 100 characters long; at most 63$/);
  });
});
