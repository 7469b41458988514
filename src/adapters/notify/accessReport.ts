/**
 * A revoke run's access report as the notifications say it (seed §7.3's recovery notice, "impact
 * summary"), in English and Simplified Chinese: who accessed the sensitive tables, and, always,
 * where no evidence exists. One home for both channels: email and Slack render these lines.
 */
import type { AccessReportSummary } from '../../core/notifications';

export type ReportLocale = 'en' | 'zh-CN';

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

const WORDS = {
  en: {
    heading: 'Access report',
    window: (from: string, to: string, objects: string) => `${objects}, ${from} – ${to} (UTC)`,
    access: (account: string, instance: string, reads: number, writes: number) => `${account} on ${instance}: ${reads} read(s), ${writes} write(s)`,
    none: 'no access recorded by any source',
    gap: (instance: string, shows: 'reads' | 'writes', from: string, to: string) =>
      `no evidence of ${shows} on ${instance} from ${from} to ${to}: ${shows} there cannot be proven or excluded`,
    files: (files: string[]) => `full report: ${files.join(', ')}`,
  },
  'zh-CN': {
    heading: '访问报告',
    window: (from: string, to: string, objects: string) => `${objects}，${from} 至 ${to}（UTC）`,
    access: (account: string, instance: string, reads: number, writes: number) => `${account}（${instance}）：读取 ${reads} 次，写入 ${writes} 次`,
    none: '所有来源均未记录到访问',
    gap: (instance: string, shows: 'reads' | 'writes', from: string, to: string) =>
      `${instance} 在 ${from} 至 ${to} 期间没有${shows === 'reads' ? '读取' : '写入'}证据：该期间的${shows === 'reads' ? '读取' : '写入'}既无法证明也无法排除`,
    files: (files: string[]) => `完整报告：${files.join('，')}`,
  },
} as const;

export function accessReportLines(r: AccessReportSummary, locale: ReportLocale): { heading: string; lines: string[] } {
  const w = WORDS[locale] ?? WORDS.en;
  return {
    heading: w.heading,
    lines: [
      w.window(iso(r.since), iso(r.until), r.objects.join(', ')),
      ...(r.accesses.length ? r.accesses.map((a) => w.access(a.account, a.instance, a.reads, a.writes)) : [w.none]),
      ...r.gaps.map((g) => w.gap(g.instance, g.shows, iso(g.from), iso(g.to))),
      w.files(r.files),
    ],
  };
}
