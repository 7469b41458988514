/** How steps and durations read to people, the same in the Temporal UI, Slack and email. Workflow-safe. */
import type { EventStatus, StepStatus } from './types';

export const STATUS_ICON: Record<StepStatus | EventStatus, string> = {
  started: '⏳',
  succeeded: '✅',
  failed: '❌',
  skipped: '⏭️',
  requested: '✋',
  reminded: '🔔',
  approved: '👍',
  auto_approved: '👍',
  rejected: '👎',
  refused: '⛔',
  timed_out: '⌛',
  notify_failed: '📵',
  retrying: '🔁',
  needs_attention: '🆘',
  resumed: '▶️',
  state_change: '🔀',
  paged: '📟',
  suppressed: '🔇',
  acknowledged: '🆗',
  downtime: '🛠️',
  vote: '🗳️',
};

/** `850 ms`, `2.4 s`, `3 min 5 s`, `1 h 2 min 3 s`; `…` while unknown (still running). */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '…';
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return h ? `${h} h ${m} min ${s} s` : `${m} min ${s} s`;
}

/** Epoch ms to a UTC DATETIME(3) literal (`2026-12-02 07:03:09.123`). */
export function sqlTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}
