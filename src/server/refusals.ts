/**
 * The approval endpoint's refusals in failover_log, bounded whatever arrives. A request that proves
 * nothing (no or a bad signature, a stale or replayed one, a forged or malformed link, a body too
 * large, an unknown route) is counted, not written: one row per source per minute, whose count and
 * reasons grow as more arrive. A source past `limitPerMinute` such refusals is answered 429 at once,
 * before its body is read. Refusals of signed, fresh requests (a real Slack click or a real link
 * that cannot count) are written one by one, with what they were about.
 */
import type { RunbookConfig } from '../config/load';
import { insertLogEvent, updateLogEventDetail, withControl } from '../adapters/control/store';
import { clip } from '../core/inputs';

interface Bucket {
  source: string;
  minute: number;
  count: number;
  reasons: Map<string, number>;
  /** The row's id once written; the insert itself while it runs. */
  id?: number;
  inserting?: Promise<void>;
  written: number;
}

const MAX_SOURCES = 10_000;
const MAX_REASONS = 20;

export class RefusalLog {
  private readonly buckets = new Map<string, Bucket>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly config: RunbookConfig,
    private readonly log: (line: string) => void,
    private readonly now: () => number,
    private readonly limitPerMinute = 30,
  ) {}

  private bucketOf(source: string): Bucket {
    const minute = Math.floor(this.now() / 60_000);
    // A flood from many addresses is still bounded: past MAX_SOURCES they share one bucket.
    const key = this.buckets.size >= MAX_SOURCES && !this.buckets.has(`${source}@${minute}`) ? `*@${minute}` : `${source}@${minute}`;
    let b = this.buckets.get(key);
    if (!b) {
      b = { source: key.startsWith('*@') ? '*' : source, minute, count: 0, reasons: new Map(), written: 0 };
      this.buckets.set(key, b);
    }
    return b;
  }

  /** Whether this source already had its share of refusals this minute (answer 429 without reading it). */
  limited(source: string): boolean {
    // Looked up, not created: a source that was never refused takes no memory.
    const minute = Math.floor(this.now() / 60_000);
    const b = this.buckets.get(`${source}@${minute}`) ?? (this.buckets.size >= MAX_SOURCES ? this.buckets.get(`*@${minute}`) : undefined);
    return (b?.count ?? 0) >= this.limitPerMinute;
  }

  /** Count an unauthenticated refusal; written at once for the first of a source's minute, later in batches. */
  count(source: string, channel: string, reason: string): void {
    const b = this.bucketOf(source);
    b.count++;
    const key = clip(`${channel}: ${reason}`, 120);
    if (b.reasons.has(key) || b.reasons.size < MAX_REASONS) b.reasons.set(key, (b.reasons.get(key) ?? 0) + 1);
    if (b.count === 1) this.log(`refusing requests from ${b.source}: ${key}`);
    this.schedule(b.count === 1 ? 0 : 1000);
  }

  private schedule(delayMs: number): void {
    if (this.timer && delayMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
    }, delayMs);
    this.timer.unref();
  }

  private detail(b: Bucket): Record<string, unknown> {
    return { source: b.source, minute: new Date(b.minute * 60_000).toISOString(), count: b.count, reasons: Object.fromEntries(b.reasons) };
  }

  /** Write new buckets and updated counts, on one connection; forget minutes that are over and written. */
  async flush(): Promise<void> {
    const current = Math.floor(this.now() / 60_000);
    const dirty = [...this.buckets.values()].filter((b) => b.written !== b.count);
    if (dirty.length) {
      try {
        await withControl(this.config, async (c) => {
          for (const b of dirty) {
            const count = b.count;
            if (b.id === undefined) {
              b.id = await insertLogEvent(c, { status: 'refused', runbook: 'approval-endpoint', step: `requests refused from ${b.source}`, at: b.minute * 60_000, detail: this.detail(b) });
            } else {
              await updateLogEventDetail(c, b.id, this.detail(b));
            }
            b.written = count;
          }
        });
      } catch (err) {
        this.log(`could not log refused requests: ${(err as Error).message}`);
        this.schedule(5000); // the control database is away: try again; the counts keep growing meanwhile
      }
    }
    for (const [key, b] of this.buckets) if (b.minute < current && b.written === b.count) this.buckets.delete(key);
  }

  /** A signed, fresh request that cannot count: its own row, naming the run it was about. */
  async audit(channel: string, reason: string, detail: Record<string, unknown>, workflowId?: string, approver?: string): Promise<void> {
    this.log(`refused ${channel} request: ${reason}`);
    await withControl(this.config, (c) =>
      insertLogEvent(c, { status: 'refused', runbook: 'approval-endpoint', step: `${channel} approval refused`, workflowId, operator: approver, detail: { reason, ...detail } }),
    ).catch((err) => this.log(`could not log the refusal: ${(err as Error).message}`));
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    await this.flush();
  }
}
