/** runPipe with an operator's commands (a reseed template): argv as given, own process groups, the consumer's lines as they come. */
import { describe, expect, it } from 'vitest';
import { isAlive } from '../../src/adapters/process/processes';
import { runPipe } from '../../src/adapters/process/tools';

describe('runPipe with group sides', () => {
  it('passes argv as given, forwards the stream and reports each consumer line', async () => {
    const lines: string[] = [];
    const run = await runPipe({ cmd: 'sh', args: ['-c', 'printf "a\\nb\\n"'], group: true }, { cmd: 'sh', args: ['-c', 'echo cleared; wc -l | tr -d " "'], group: true }, { onConsumerLine: (l) => lines.push(l) });
    expect(lines).toEqual(['cleared', '2']);
    expect(run.consumerStdout.trim().split('\n').pop()).toBe('2');
  });

  it('a timeout stops what each side started, not only the side itself', async () => {
    const lines: string[] = [];
    const run = runPipe(
      { cmd: 'sh', args: ['-c', 'sleep 60 & echo $! ; wait'], group: true },
      { cmd: 'sh', args: ['-c', 'read pid; echo $pid; sleep 60 & echo $!; wait'], group: true },
      { timeoutMs: 1000, onConsumerLine: (l) => lines.push(l) },
    );
    await expect(run).rejects.toThrow(/timed out/);
    const pids = lines.map(Number).filter((n) => n > 0);
    expect(pids).toHaveLength(2);
    // Signalled with their group; they die as the kernel gets to it (a loaded machine: a bounded wait).
    const deadline = Date.now() + 10_000;
    while (pids.some(isAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});
