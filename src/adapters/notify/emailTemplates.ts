/**
 * Email bodies for runbook notifications, after the seed's §7.3 templates (incident notice and
 * recovery notice), in English and Simplified Chinese. Pure functions: a notification in, a subject
 * plus a plain-text and an HTML body out. Each message is described once as blocks and rendered
 * twice, so the two bodies cannot drift apart; every interpolated value is escaped in HTML.
 */
import type { NotificationKind, RunbookNotification, TimelineEntry } from '../../core/notifications';
import { formatDuration } from '../../core/format';
import { accessReportLines } from './accessReport';

export { formatDuration };

export type EmailLocale = 'en' | 'zh-CN';

export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

/** Personal approve / reject links for one recipient; `expiresAt` (epoch ms) is shown when given. */
export interface EmailApprovalLinks {
  approve: string;
  reject: string;
  expiresAt?: number;
}

/** The kinds that get an email; `step` and `approval-decided` are for chat and logs only. */
export const EMAIL_KINDS: readonly NotificationKind[] = ['alert', 'incident-opened', 'approval-needed', 'approval-reminder', 'needs-attention', 'completed', 'failed', 'aborted'];

export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** `2024-05-01T10:00:03Z`: ISO 8601 in UTC, to the second. */
export function isoUtc(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}


const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

// ---------------------------------------------------------------------------------------------
// Words

interface Strings {
  sep: string;
  subject: {
    incident: (severity: string, title: string) => string;
    approval: (title: string) => string;
    reminder: (title: string) => string;
    completed: (title: string) => string;
    failed: (title: string) => string;
    aborted: (title: string) => string;
    attention: (title: string) => string;
  };
  heading: {
    incident: (severity: string) => string;
    approval: string;
    reminder: string;
    completed: string;
    failed: string;
    aborted: string;
    attention: string;
  };
  time: string;
  impact: string;
  status: string;
  eta: string;
  contact: string;
  cluster: string;
  runbook: string;
  incident: string;
  requester: string;
  reason: string;
  workflow: string;
  plan: string;
  approvers: string;
  anyOperator: string;
  fourEyes: (requester: string) => string;
  deadline: string;
  forcedBecause: string;
  approve: string;
  reject: string;
  linkNote: (expiresAt?: number) => string;
  noLinks: (workflowId: string) => string;
  cliAlternative: (workflowId: string) => string;
  recoveryTime: string;
  totalDuration: (d: string) => string;
  rootCause: string;
  followUp: string;
  impactSummary: string;
  timeline: string;
  timelineColumns: [string, string, string, string, string];
  failedStep: string;
  failedNote: string;
  abortedNote: string;
  follow: (workflowId: string) => string;
  attentionNote: string;
  attentionStep: string;
  attentionLeft: string;
  attentionResume: string;
}

const en: Strings = {
  sep: ': ',
  subject: {
    incident: (sev, title) => `[URGENT] MySQL database incident - impact level ${sev}: ${title}`,
    approval: (title) => `[APPROVAL NEEDED] ${title}`,
    reminder: (title) => `[REMINDER] [APPROVAL NEEDED] ${title}`,
    completed: (title) => `[RESOLVED] MySQL database incident recovered: ${title}`,
    failed: (title) => `[UPDATE] MySQL database incident - runbook failed: ${title}`,
    aborted: (title) => `[UPDATE] MySQL database incident - runbook stopped: ${title}`,
    attention: (title) => `[ACTION NEEDED] MySQL database incident - runbook waits for a human: ${title}`,
  },
  heading: {
    incident: (sev) => `MySQL database incident - impact level ${sev}`,
    approval: 'Approval needed',
    reminder: 'Reminder: approval still needed',
    completed: 'MySQL database incident recovered',
    failed: 'Update: the runbook failed',
    aborted: 'Update: the runbook stopped',
    attention: 'Action needed: the runbook cannot finish by itself',
  },
  time: 'Time',
  impact: 'Impact',
  status: 'Status',
  eta: 'ETA',
  contact: 'Contact',
  cluster: 'Cluster',
  runbook: 'Runbook',
  incident: 'Incident',
  requester: 'Requested by',
  reason: 'Reason',
  workflow: 'Workflow ID',
  plan: 'Plan',
  approvers: 'Approvers',
  anyOperator: 'any operator',
  fourEyes: (requester) => `Four-eyes: the requester (${requester}) may not approve this run.`,
  deadline: 'Decide by',
  forcedBecause: 'Why a human must decide',
  approve: 'Approve',
  reject: 'Reject',
  linkNote: (expiresAt) =>
    `Each link opens a confirmation page (nothing happens until you confirm there), works only once and ${
      expiresAt === undefined ? 'expires' : `expires at ${isoUtc(expiresAt)}`
    }. The links are personal: do not forward this email.`,
  noLinks: (id) => `Approval links are not configured: decide from the CLI with \`runbook approve ${id} --as YOUR_NAME\` or \`runbook reject ${id} --as YOUR_NAME\`.`,
  cliAlternative: (id) => `Or from the CLI: \`runbook approve ${id} --as YOUR_NAME\` / \`runbook reject ${id} --as YOUR_NAME\`.`,
  recoveryTime: 'Recovery time',
  totalDuration: (d) => `total ${d}`,
  rootCause: 'Root cause',
  followUp: 'Follow-up actions',
  impactSummary: 'Impact summary',
  timeline: 'Timeline',
  timelineColumns: ['#', 'Step', 'Status', 'Started (UTC)', 'Duration'],
  failedStep: 'Failed step',
  failedNote: 'The runbook failed: the incident is NOT resolved. The contact below is following up.',
  abortedNote: 'The runbook stopped before completing; nothing more will be done automatically.',
  follow: (id) => `Details: \`runbook status ${id}\``,
  attentionNote: 'The runbook is past its point of no return (the new primary is writable): it does not undo, it carries on once the cause below is fixed. Until then the cluster is not fully switched.',
  attentionStep: 'Step that cannot finish',
  attentionLeft: 'Steps left',
  attentionResume: 'When the cause is fixed',
};

const zh: Strings = {
  sep: '：',
  subject: {
    incident: (sev, title) => `[紧急] MySQL数据库故障 - 影响等级${sev}：${title}`,
    approval: (title) => `[需要审批] ${title}`,
    reminder: (title) => `[提醒] [需要审批] ${title}`,
    completed: (title) => `[解决] MySQL数据库故障已恢复：${title}`,
    failed: (title) => `[更新] MySQL数据库故障 - 处理失败：${title}`,
    aborted: (title) => `[更新] MySQL数据库故障 - 处理已中止：${title}`,
    attention: (title) => `[需要处理] MySQL数据库故障 - 运行手册等待人工处理：${title}`,
  },
  heading: {
    incident: (sev) => `MySQL数据库故障 - 影响等级${sev}`,
    approval: '需要审批',
    reminder: '提醒：仍在等待审批',
    completed: 'MySQL数据库故障已恢复',
    failed: '更新：运行手册执行失败',
    aborted: '更新：运行手册已中止',
    attention: '需要处理：运行手册无法自行完成',
  },
  time: '时间',
  impact: '影响',
  status: '现状',
  eta: 'ETA',
  contact: '联系人',
  cluster: '集群',
  runbook: '运行手册',
  incident: '事件编号',
  requester: '发起人',
  reason: '原因',
  workflow: '工作流ID',
  plan: '执行计划',
  approvers: '审批人',
  anyOperator: '任意操作员',
  fourEyes: (requester) => `四眼原则：发起人（${requester}）不能审批本次操作。`,
  deadline: '审批截止',
  forcedBecause: '需要人工审批的原因',
  approve: '批准',
  reject: '拒绝',
  linkNote: (expiresAt) =>
    `链接会先打开确认页面（确认前不会执行任何操作），仅可使用一次，${
      expiresAt === undefined ? '且会过期' : `将于 ${isoUtc(expiresAt)} 过期`
    }。链接仅供本人使用，请勿转发此邮件。`,
  noLinks: (id) => `未配置审批链接：请使用命令行审批：\`runbook approve ${id} --as 您的名字\` 或 \`runbook reject ${id} --as 您的名字\`。`,
  cliAlternative: (id) => `也可使用命令行：\`runbook approve ${id} --as 您的名字\` / \`runbook reject ${id} --as 您的名字\`。`,
  recoveryTime: '恢复时间',
  totalDuration: (d) => `总耗时 ${d}`,
  rootCause: '根本原因',
  followUp: '预防措施',
  impactSummary: '影响总结',
  timeline: '时间线',
  timelineColumns: ['#', '步骤', '状态', '开始时间 (UTC)', '耗时'],
  failedStep: '失败步骤',
  failedNote: '运行手册执行失败：故障尚未解决，下方联系人正在跟进。',
  abortedNote: '运行手册未完成即已停止，不会再自动执行任何操作。',
  follow: (id) => `详情：\`runbook status ${id}\``,
  attentionNote: '运行手册已过不可回退点（新主库已可写）：不会回滚，排除下述原因后将继续执行。在此之前集群尚未完全切换。',
  attentionStep: '无法完成的步骤',
  attentionLeft: '剩余步骤',
  attentionResume: '排除原因后执行',
};

const STRINGS: Record<EmailLocale, Strings> = { en, 'zh-CN': zh };

// ---------------------------------------------------------------------------------------------
// Blocks: one description, two renderings

type Field = [label: string, value: string | undefined];

type Block =
  | { type: 'heading'; text: string }
  | { type: 'title'; text: string }
  | { type: 'para'; text: string }
  | { type: 'fields'; rows: Field[] }
  | { type: 'section'; label: string }
  | { type: 'pre'; text: string }
  | { type: 'list'; items: string[] }
  | { type: 'links'; links: { label: string; url: string; color: string }[] }
  | { type: 'timeline'; entries: TimelineEntry[] };

function timelineRow(e: TimelineEntry): [string, string, string, string, string] {
  const started = isoUtc(e.startedAt).slice(11, 19);
  const duration = e.durationMs === undefined ? '-' : formatDuration(e.durationMs);
  return [String(e.seq), e.note ? `${e.name} (${e.note})` : e.name, e.status, started, duration];
}

/** Columns a string takes in a monospaced font (CJK and full-width characters take two). */
function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/.test(ch) ? 2 : 1;
  return w;
}

const padDisplay = (s: string, width: number) => s + ' '.repeat(Math.max(0, width - displayWidth(s)));

function renderText(blocks: Block[], s: Strings): string {
  const out: string[] = [];
  for (const b of blocks) {
    switch (b.type) {
      case 'heading':
        out.push(b.text, '='.repeat(Math.min(72, Math.max(8, displayWidth(b.text)))));
        break;
      case 'title':
        out.push(b.text, '');
        break;
      case 'para':
        out.push(b.text, '');
        break;
      case 'fields': {
        const rows = b.rows.filter((r): r is [string, string] => r[1] !== undefined && r[1] !== '');
        for (const [label, value] of rows) out.push(`${label}${s.sep}${value.replace(/\r?\n/g, '\n  ')}`);
        if (rows.length) out.push('');
        break;
      }
      case 'section':
        out.push(`${b.label}${s.sep.trimEnd()}`);
        break;
      case 'pre':
        out.push(b.text.replace(/\r\n/g, '\n').trimEnd(), '');
        break;
      case 'list':
        for (const item of b.items) out.push(`  - ${item}`);
        out.push('');
        break;
      case 'links':
        for (const l of b.links) out.push(`  ${l.label}${s.sep}${l.url}`);
        out.push('');
        break;
      case 'timeline': {
        const rows = [s.timelineColumns, ...b.entries.map(timelineRow)];
        const widths = s.timelineColumns.map((_, i) => Math.max(...rows.map((r) => displayWidth(r[i]!))));
        for (const r of rows) out.push(`  ${r.map((c, i) => (i === r.length - 1 ? c : padDisplay(c, widths[i]!))).join('  ')}`.trimEnd());
        out.push('');
        break;
      }
    }
  }
  return `${out.join('\n').trimEnd()}\n`;
}

const multiline = (v: string) => escapeHtml(v).replace(/\r?\n/g, '<br>');

function renderHtml(blocks: Block[], lang: EmailLocale): string {
  const out: string[] = [];
  const cell = 'padding:4px 10px 4px 0;vertical-align:top;text-align:left';
  for (const b of blocks) {
    switch (b.type) {
      case 'heading':
        out.push(`<h2 style="margin:0 0 4px 0">${escapeHtml(b.text)}</h2>`);
        break;
      case 'title':
        out.push(`<p style="margin:0 0 16px 0;font-size:16px"><strong>${escapeHtml(b.text)}</strong></p>`);
        break;
      case 'para':
        out.push(`<p>${multiline(b.text)}</p>`);
        break;
      case 'fields': {
        const rows = b.rows.filter((r): r is [string, string] => r[1] !== undefined && r[1] !== '');
        if (!rows.length) break;
        out.push('<table style="border-collapse:collapse;margin:0 0 12px 0">');
        for (const [label, value] of rows) {
          out.push(`<tr><th style="${cell};white-space:nowrap">${escapeHtml(label)}</th><td style="${cell}">${multiline(value)}</td></tr>`);
        }
        out.push('</table>');
        break;
      }
      case 'section':
        out.push(`<h3 style="margin:16px 0 6px 0">${escapeHtml(b.label)}</h3>`);
        break;
      case 'pre':
        out.push(`<pre style="white-space:pre-wrap;font-family:Menlo,Consolas,monospace;background:#f6f8fa;padding:8px;margin:0 0 12px 0">${escapeHtml(b.text.replace(/\r\n/g, '\n').trimEnd())}</pre>`);
        break;
      case 'list':
        out.push(`<ul>${b.items.map((i) => `<li>${multiline(i)}</li>`).join('')}</ul>`);
        break;
      case 'links':
        out.push(
          `<p>${b.links
            .map((l) => `<a href="${escapeHtml(l.url)}" style="display:inline-block;padding:8px 18px;margin-right:12px;color:#ffffff;background:${l.color};text-decoration:none;border-radius:4px">${escapeHtml(l.label)}</a>`)
            .join('')}</p>`,
        );
        break;
      case 'timeline': {
        const s = STRINGS[lang];
        out.push('<table style="border-collapse:collapse;margin:0 0 12px 0">');
        out.push(`<tr>${s.timelineColumns.map((c) => `<th style="${cell};border-bottom:1px solid #ccc">${escapeHtml(c)}</th>`).join('')}</tr>`);
        for (const e of b.entries) out.push(`<tr>${timelineRow(e).map((c) => `<td style="${cell}">${escapeHtml(c)}</td>`).join('')}</tr>`);
        out.push('</table>');
        break;
      }
    }
  }
  return [
    '<!DOCTYPE html>',
    `<html lang="${lang}"><head><meta charset="utf-8"></head>`,
    '<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;line-height:1.5;color:#222">',
    ...out,
    '</body></html>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The messages

function contextFields(n: RunbookNotification, s: Strings): Field[] {
  return [
    [s.cluster, n.cluster],
    [s.runbook, n.runbook],
    [s.incident, n.incidentId],
    [s.requester, n.requester],
    [s.reason, n.reason],
    [s.workflow, n.workflowId],
  ];
}

function incidentOpened(n: RunbookNotification, s: Strings): { subject: string; blocks: Block[] } {
  return {
    subject: s.subject.incident(n.severity, oneLine(n.title)),
    blocks: [
      { type: 'heading', text: s.heading.incident(n.severity) },
      { type: 'title', text: n.title },
      {
        type: 'fields',
        rows: [
          [s.time, isoUtc(n.startedAt)],
          [s.impact, n.impact],
          [s.status, n.status],
          [s.eta, n.eta],
          [s.contact, n.contact],
        ],
      },
      { type: 'fields', rows: contextFields(n, s) },
      { type: 'para', text: s.follow(n.workflowId) },
    ],
  };
}

function approvalNeeded(n: RunbookNotification, s: Strings, links?: EmailApprovalLinks): { subject: string; blocks: Block[] } {
  const reminder = n.kind === 'approval-reminder';
  const a = n.approval;
  const blocks: Block[] = [
    { type: 'heading', text: reminder ? s.heading.reminder : s.heading.approval },
    { type: 'title', text: n.title },
    {
      type: 'fields',
      rows: [
        [s.status, n.status],
        [s.approvers, a ? (a.approvers.length ? a.approvers.join(', ') : s.anyOperator) : undefined],
        [s.deadline, a ? isoUtc(a.deadline) : undefined],
        [s.forcedBecause, a?.forcedBecause],
      ],
    },
  ];
  if (a?.fourEyes) blocks.push({ type: 'para', text: s.fourEyes(n.requester) });
  // The plan first: read what will happen, then decide.
  if (n.plan) blocks.push({ type: 'section', label: s.plan }, { type: 'pre', text: n.plan });
  if (links) {
    blocks.push(
      { type: 'links', links: [{ label: s.approve, url: links.approve, color: '#2e7d32' }, { label: s.reject, url: links.reject, color: '#c62828' }] },
      { type: 'para', text: s.linkNote(links.expiresAt) },
      { type: 'para', text: s.cliAlternative(n.workflowId) },
    );
  } else {
    blocks.push({ type: 'para', text: s.noLinks(n.workflowId) });
  }
  blocks.push({ type: 'fields', rows: [[s.impact, n.impact], [s.contact, n.contact], ...contextFields(n, s)] });
  return { subject: (reminder ? s.subject.reminder : s.subject.approval)(oneLine(n.title)), blocks };
}

/** When the run ended: `endedAt`, else the end of its last measured step. */
function endOf(n: RunbookNotification): number | undefined {
  if (n.endedAt !== undefined) return n.endedAt;
  const ends = n.timeline.filter((e) => e.durationMs !== undefined).map((e) => e.startedAt + e.durationMs!);
  return ends.length ? Math.max(...ends) : undefined;
}

function completed(n: RunbookNotification, s: Strings): { subject: string; blocks: Block[] } {
  const end = endOf(n);
  const blocks: Block[] = [
    { type: 'heading', text: s.heading.completed },
    { type: 'title', text: n.title },
    {
      type: 'fields',
      rows: [
        [s.recoveryTime, end === undefined ? undefined : `${isoUtc(end)} (${s.totalDuration(formatDuration(end - n.startedAt))})`],
        [s.rootCause, n.rootCause ?? n.reason],
      ],
    },
  ];
  if (n.followUp?.length) blocks.push({ type: 'section', label: s.followUp }, { type: 'list', items: n.followUp });
  blocks.push({ type: 'fields', rows: [[s.impactSummary, n.impact], [s.status, n.status], [s.contact, n.contact]] });
  if (n.accessReport) {
    const r = accessReportLines(n.accessReport, s === STRINGS['zh-CN'] ? 'zh-CN' : 'en');
    blocks.push({ type: 'section', label: r.heading }, { type: 'list', items: r.lines });
  }
  if (n.timeline.length) blocks.push({ type: 'section', label: s.timeline }, { type: 'timeline', entries: n.timeline });
  blocks.push({ type: 'fields', rows: contextFields(n, s) });
  return { subject: s.subject.completed(oneLine(n.title)), blocks };
}

/** Failed or stopped: short, so nobody is left waiting for a recovery notice that will not come. */
function update(n: RunbookNotification, s: Strings): { subject: string; blocks: Block[] } {
  const failed = n.kind === 'failed';
  const end = endOf(n);
  const failedStep = [...n.timeline].reverse().find((e) => e.status === 'failed');
  return {
    subject: (failed ? s.subject.failed : s.subject.aborted)(oneLine(n.title)),
    blocks: [
      { type: 'heading', text: failed ? s.heading.failed : s.heading.aborted },
      { type: 'title', text: n.title },
      { type: 'para', text: failed ? s.failedNote : s.abortedNote },
      {
        type: 'fields',
        rows: [
          [s.time, isoUtc(end ?? n.startedAt)],
          [s.status, n.status],
          [s.failedStep, failedStep ? (failedStep.note ? `${failedStep.name}: ${failedStep.note}` : failedStep.name) : undefined],
          [s.contact, n.contact],
        ],
      },
      { type: 'fields', rows: contextFields(n, s) },
      { type: 'para', text: s.follow(n.workflowId) },
    ],
  };
}

/** A page from the monitor: what it saw, and what a human must decide. */
function alert(n: RunbookNotification, s: Strings): { subject: string; blocks: Block[] } {
  return {
    subject: `[${n.severity}] ${oneLine(n.title)}: ${oneLine(n.status)}`.slice(0, 200),
    blocks: [
      { type: 'heading', text: n.title },
      { type: 'para', text: n.status },
      { type: 'fields', rows: [[s.time, isoUtc(n.startedAt)], [s.contact, n.contact]] },
      { type: 'para', text: s.follow(n.workflowId) },
    ],
  };
}

/** Waiting for a human past the point of no return: what cannot finish, what is left, how to carry on. */
function needsAttention(n: RunbookNotification, s: Strings): { subject: string; blocks: Block[] } {
  const a = n.attention;
  return {
    subject: s.subject.attention(oneLine(n.title)),
    blocks: [
      { type: 'heading', text: s.heading.attention },
      { type: 'title', text: n.title },
      { type: 'para', text: s.attentionNote },
      {
        type: 'fields',
        rows: [
          [s.status, n.status],
          [s.attentionStep, a ? `${a.step}: ${a.error}` : undefined],
          [s.attentionLeft, a?.left.join(', ')],
          [s.attentionResume, a?.resume],
          [s.contact, n.contact],
        ],
      },
      { type: 'fields', rows: contextFields(n, s) },
      { type: 'para', text: s.follow(n.workflowId) },
    ],
  };
}

/**
 * The email for a notification in `locale`, or undefined for kinds that get none (`step`,
 * `approval-decided`). `links` are the recipient's personal approve / reject links (approval kinds
 * only); without them the message says how to decide from the CLI.
 */
export function renderEmail(n: RunbookNotification, locale: EmailLocale, links?: EmailApprovalLinks): RenderedEmail | undefined {
  const s = STRINGS[locale] ?? en;
  let message: { subject: string; blocks: Block[] };
  switch (n.kind) {
    case 'incident-opened':
      message = incidentOpened(n, s);
      break;
    case 'approval-needed':
    case 'approval-reminder':
      message = approvalNeeded(n, s, links);
      break;
    case 'needs-attention':
      message = needsAttention(n, s);
      break;
    case 'alert':
      // Only pages (L1) are mailed: the monitor's other changes go to chat and the log.
      if (n.severity !== 'L1') return undefined;
      message = alert(n, s);
      break;
    case 'completed':
      message = completed(n, s);
      break;
    case 'failed':
    case 'aborted':
      message = update(n, s);
      break;
    default:
      return undefined;
  }
  return { subject: message.subject, text: renderText(message.blocks, s), html: renderHtml(message.blocks, STRINGS[locale] ? locale : 'en') };
}
