/**
 * Slack notifier: one ROOT message per run in the cluster's channel, updated in place as the run
 * goes (status, latest timeline, Approve/Reject buttons while an approval is open), and replies in
 * its thread for each step, approval decision and the final summary.
 *
 * Slack being slow or down must never hold a runbook for long: one WebClient with a bounded retry
 * policy (Retry-After honoured for HTTP 429, but never beyond the retry budget) and a per-request
 * timeout. Errors name the Slack method and Slack's error code, never the token.
 */
import { ErrorCode, LogLevel, WebClient, type FetchFunction } from '@slack/web-api';
import type { RunbookConfig } from '../../config/load';
import type { Person } from '../../core/configSchema';
import type { Notifier } from './notifier';
import type { NotificationKind, NotifyThread, RunbookNotification, Severity, TimelineEntry } from '../../core/notifications';
import { formatDuration, STATUS_ICON } from '../../core/format';
import { accessReportLines } from './accessReport';

export { formatDuration };

export type SlackLocale = 'en' | 'zh-CN';

/** What chat.postMessage / chat.update get: a fallback `text` (notifications) and Block Kit blocks. */
export interface SlackMessage {
  text: string;
  blocks: SlackBlock[];
}

/** A Block Kit block, as plain data (header, section, context, actions, divider). */
export type SlackBlock = { type: string; block_id?: string } & Record<string, unknown>;

export interface SlackNotifierOptions {
  config: RunbookConfig;
  token: string;
  /** Web API base URL ending in `/api/` (tests point it at a fake server). */
  apiUrl?: string;
  /** Retries per Slack call after the first attempt (HTTP errors, timeouts, 429s). Default 3. */
  retries?: number;
  /** No retry starts after this long (ms) since the call began; a longer Retry-After fails fast. Default 20 s. */
  maxRetryTimeMs?: number;
  /** Per HTTP request (ms). Default 5 s. */
  timeoutMs?: number;
}

/** Approve/Reject buttons: action ids the Slack interactivity handler listens for; value = workflowId. */
export const SLACK_APPROVE_ACTION = 'runbook_approve';
export const SLACK_REJECT_ACTION = 'runbook_reject';
export const SLACK_APPROVAL_BLOCK = 'runbook_approval';

const DEFAULT_RETRIES = 3;
const DEFAULT_MAX_RETRY_TIME_MS = 20_000;
const DEFAULT_TIMEOUT_MS = 5_000;
/** Entries of the timeline shown in the root message (the final summary reply shows all). */
const ROOT_TIMELINE_ENTRIES = 8;

/** Kinds whose root message carries the Approve/Reject buttons. */
const APPROVAL_OPEN: ReadonlySet<NotificationKind> = new Set(['approval-needed', 'approval-reminder']);
/** Kinds that also get a reply in the root's thread. */
const REPLY_KINDS: ReadonlySet<NotificationKind> = new Set(['alert', 'step', 'approval-decided', 'approval-reminder', 'needs-attention', 'completed', 'failed', 'aborted']);
const FINAL_KINDS: ReadonlySet<NotificationKind> = new Set(['completed', 'failed', 'aborted']);

// ---------------------------------------------------------------------------------------------
// Strings

interface Strings {
  sep: string;
  cluster: string;
  runbook: string;
  incident: string;
  severity: string;
  requester: string;
  reason: string;
  status: string;
  plan: string;
  impact: string;
  eta: string;
  contact: string;
  rootCause: string;
  followUp: string;
  timeline: string;
  earlier: (count: number) => string;
  noSteps: string;
  approve: string;
  reject: string;
  confirmApprove: string;
  confirmReject: string;
  cancel: string;
  approvers: string;
  anyOperator: string;
  fourEyes: string;
  deadline: string;
  forcedBecause: string;
  approvalNeeded: string;
  reminder: string;
  approvedBy: string;
  rejectedBy: string;
  via: string;
  workflow: string;
  started: string;
  total: string;
  final: Record<'completed' | 'failed' | 'aborted', string>;
  needsAttention: string;
  left: string;
  resumeWith: string;
}

const STRINGS: Record<SlackLocale, Strings> = {
  en: {
    sep: ': ',
    cluster: 'Cluster',
    runbook: 'Runbook',
    incident: 'Incident',
    severity: 'Severity',
    requester: 'Requester',
    reason: 'Reason',
    status: 'Status',
    plan: 'Plan',
    impact: 'Impact',
    eta: 'ETA',
    contact: 'Contact',
    rootCause: 'Root cause',
    followUp: 'Follow-up actions',
    timeline: 'Timeline',
    earlier: (count) => `… ${count} earlier ${count === 1 ? 'entry' : 'entries'} in the thread`,
    noSteps: 'no steps yet',
    approve: 'Approve',
    reject: 'Reject',
    confirmApprove: 'Approve this run?',
    confirmReject: 'Reject this run?',
    cancel: 'Cancel',
    approvers: 'Approvers',
    anyOperator: 'any operator',
    fourEyes: 'four-eyes: the requester may not approve',
    deadline: 'Decide by',
    forcedBecause: 'Why a human must decide',
    approvalNeeded: 'Approval needed',
    reminder: 'Reminder: approval still needed',
    approvedBy: 'Approved by',
    rejectedBy: 'Rejected by',
    via: 'via',
    workflow: 'Workflow',
    started: 'Started',
    total: 'Total',
    final: { completed: 'Completed', failed: 'Failed', aborted: 'Stopped' },
    needsAttention: 'Needs attention: past its point of no return, the run cannot finish by itself and waits',
    left: 'Left',
    resumeWith: 'When the cause is fixed',
  },
  'zh-CN': {
    sep: '：',
    cluster: '集群',
    runbook: '运行手册',
    incident: '事件',
    severity: '影响等级',
    requester: '发起人',
    reason: '原因',
    status: '状态',
    plan: '执行计划',
    impact: '影响',
    eta: '预计恢复',
    contact: '联系人',
    rootCause: '根本原因',
    followUp: '后续措施',
    timeline: '时间线',
    earlier: (count) => `… 更早的 ${count} 条记录见消息串`,
    noSteps: '尚无步骤',
    approve: '批准',
    reject: '拒绝',
    confirmApprove: '确认批准本次操作？',
    confirmReject: '确认拒绝本次操作？',
    cancel: '取消',
    approvers: '审批人',
    anyOperator: '任意操作员',
    fourEyes: '四眼原则：发起人不能审批',
    deadline: '审批截止',
    forcedBecause: '需要人工审批的原因',
    approvalNeeded: '需要审批',
    reminder: '提醒：仍在等待审批',
    approvedBy: '批准人',
    rejectedBy: '拒绝人',
    via: '渠道',
    workflow: '工作流',
    started: '开始',
    total: '总耗时',
    final: { completed: '已完成', failed: '失败', aborted: '已中止' },
    needsAttention: '需要处理：已过不可回退点，运行无法自行完成，正在等待',
    left: '剩余步骤',
    resumeWith: '排除原因后执行',
  },
};

const KIND_ICON: Record<NotificationKind, string> = {
  'incident-opened': '🚨',
  'approval-needed': '✋',
  'approval-reminder': '🔔',
  'approval-decided': '⚖️',
  step: '⏳',
  completed: '✅',
  failed: '❌',
  aborted: '⛔',
  'needs-attention': '🆘',
  alert: '📟',
};


const STATUS_ICONS: Record<string, string> = STATUS_ICON;

const SEVERITY_ICON: Record<Severity, string> = { L1: '🔴', L2: '🟠', L3: '🟡' };

// ---------------------------------------------------------------------------------------------
// Formatting helpers (pure)

/** Slack mrkdwn control characters; user text is always escaped so it cannot ping `<!channel>`. */
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function oneLine(s: string): string {
  return s.replace(/\s*\r?\n\s*/g, ' ').trim();
}


function isoUtc(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** A time Slack shows in each reader's own time zone, with a UTC fallback. */
function slackDate(ms: number): string {
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time}|${isoUtc(ms)}>`;
}

/** An approver or requester name: a Slack mention when `people` knows their Slack id. */
function who(name: string, people: readonly Person[]): string {
  const slack = people.find((p) => p.name === name)?.slack;
  return slack ? `<@${slack}>` : esc(name);
}

/**
 * Markdown (as runbooks write plans) to Slack mrkdwn: `**b**` → `*b*`, `*i*`/`_i_` → `_i_`,
 * `~~s~~` → `~s~`, `[t](url)` → `<url|t>`, headings bold, `-` bullets → `•`. Code is left alone.
 */
export function markdownToMrkdwn(md: string): string {
  const BOLD = '\u0001';
  const convert = (text: string): string =>
    esc(text)
      .replace(/^(\s*)[-*+]\s+/gm, '$1• ')
      .replace(/^#{1,6}\s+(.+?)\s*#*\s*$/gm, `${BOLD}$1${BOLD}`)
      .replace(/\*\*(.+?)\*\*/g, `${BOLD}$1${BOLD}`)
      .replace(/__(.+?)__/g, `${BOLD}$1${BOLD}`)
      .replace(/(^|[^*\w])\*(?!\s)([^*\n]+?)\*(?![*\w])/g, '$1_$2_')
      .replace(/~~(.+?)~~/g, '~$1~')
      .replace(/\[([^\]\n]+)\]\((https?:\/\/[^)\s]+)\)/g, '<$2|$1>')
      .replaceAll(BOLD, '*');
  // Odd parts are code (fenced or inline): only escaped, never reformatted.
  return md
    .split(/(```[\s\S]*?```|`[^`\n]+`)/)
    .map((part, i) => (i % 2 === 1 ? esc(part) : convert(part)))
    .join('');
}

function statusIcon(status: string): string {
  return STATUS_ICONS[status] ?? '•';
}

/** `✅ *promote* succeeded · 1.2 s — orders-b is primary` */
function entryLine(e: TimelineEntry, maxNote: number): string {
  const note = e.note ? ` — ${esc(truncate(oneLine(e.note), maxNote))}` : '';
  return `${statusIcon(e.status)} *${esc(e.name)}* ${esc(e.status)} · ${formatDuration(e.durationMs)}${note}`;
}

function field(label: string, value: string): { type: 'mrkdwn'; text: string } {
  return { type: 'mrkdwn', text: `*${label}*\n${truncate(value, 1900)}` };
}

function section(text: string): SlackBlock {
  return { type: 'section', text: { type: 'mrkdwn', text: truncate(text, 3000) } };
}

function context(text: string): SlackBlock {
  return { type: 'context', elements: [{ type: 'mrkdwn', text: truncate(text, 2000) }] };
}

/** Lines into as few sections as Slack's 3000-character limit allows. */
function sections(lines: string[]): SlackBlock[] {
  const out: SlackBlock[] = [];
  let current = '';
  for (const line of lines) {
    const l = truncate(line, 2900);
    if (current && current.length + 1 + l.length > 2900) {
      out.push(section(current));
      current = l;
    } else current = current ? `${current}\n${l}` : l;
  }
  if (current) out.push(section(current));
  return out;
}

function severityText(n: RunbookNotification): string {
  return `${SEVERITY_ICON[n.severity] ?? ''} ${n.severity}`.trim();
}

function statusText(n: RunbookNotification): string {
  let icon = KIND_ICON[n.kind];
  if (n.kind === 'approval-decided') icon = n.decision?.decision === 'reject' ? '👎' : '👍';
  if (n.kind === 'step' && n.step) icon = statusIcon(n.step.status);
  return `${icon} ${esc(oneLine(n.status))}`;
}

function decisionLine(n: RunbookNotification, s: Strings, people: readonly Person[]): string | undefined {
  const d = n.decision;
  if (!d) return undefined;
  const verb = d.decision === 'approve' ? `👍 ${s.approvedBy}` : `👎 ${s.rejectedBy}`;
  const comment = d.comment ? ` — ${esc(oneLine(d.comment))}` : '';
  return `${verb}${s.sep}${who(d.approver, people)} (${s.via} ${esc(d.channel)})${comment}`;
}

function approvalLine(n: RunbookNotification, s: Strings, people: readonly Person[]): string | undefined {
  const a = n.approval;
  if (!a) return undefined;
  const parts = [`${s.approvers}${s.sep}${a.approvers.length ? a.approvers.map((p) => who(p, people)).join(', ') : s.anyOperator}`];
  if (a.fourEyes) parts.push(s.fourEyes);
  parts.push(`${s.deadline}${s.sep}${slackDate(a.deadline)}`);
  if (a.forcedBecause) parts.push(`${s.forcedBecause}${s.sep}${esc(oneLine(a.forcedBecause))}`);
  return parts.join(' · ');
}

// ---------------------------------------------------------------------------------------------
// Messages (pure)

/**
 * The run's root message. `withActions` adds the Approve/Reject buttons (value = workflowId); the
 * notifier passes it for `approval-needed` / `approval-reminder` only, so any later update removes them.
 */
export function buildRootMessage(
  n: RunbookNotification,
  locale: SlackLocale,
  withActions: boolean,
  people: readonly Person[] = [],
): SlackMessage {
  const s = STRINGS[locale] ?? STRINGS.en;
  const blocks: SlackBlock[] = [];
  blocks.push({ type: 'header', text: { type: 'plain_text', text: truncate(oneLine(n.title), 150), emoji: true } });

  const fields = [
    field(s.cluster, esc(n.cluster)),
    field(s.runbook, esc(n.runbook)),
    ...(n.incidentId ? [field(s.incident, esc(n.incidentId))] : []),
    field(s.severity, severityText(n)),
    field(s.requester, who(n.requester, people)),
    field(s.reason, n.reason ? esc(n.reason) : '—'),
    field(s.status, statusText(n)),
  ];
  blocks.push({ type: 'section', fields });

  const notice: [string, string | undefined][] = [
    [s.impact, n.impact],
    [s.eta, n.eta],
    [s.contact, n.contact],
  ];
  const noticeFields = notice.filter(([, v]) => v).map(([label, v]) => field(label, esc(v!)));
  if (noticeFields.length) blocks.push({ type: 'section', fields: noticeFields });

  if (n.plan) blocks.push(section(`*${s.plan}*\n${markdownToMrkdwn(n.plan)}`));
  if (n.rootCause) blocks.push(section(`*${s.rootCause}*\n${esc(n.rootCause)}`));
  if (n.followUp?.length) blocks.push(section(`*${s.followUp}*\n${n.followUp.map((f) => `• ${esc(f)}`).join('\n')}`));

  if (withActions) {
    blocks.push({
      type: 'actions',
      block_id: SLACK_APPROVAL_BLOCK,
      elements: [
        {
          type: 'button',
          action_id: SLACK_APPROVE_ACTION,
          style: 'primary',
          text: { type: 'plain_text', text: s.approve, emoji: true },
          value: n.workflowId,
          confirm: {
            title: { type: 'plain_text', text: s.approve },
            text: { type: 'mrkdwn', text: `${s.confirmApprove}\n${esc(truncate(oneLine(n.title), 250))}` },
            confirm: { type: 'plain_text', text: s.approve },
            deny: { type: 'plain_text', text: s.cancel },
            style: 'primary',
          },
        },
        {
          type: 'button',
          action_id: SLACK_REJECT_ACTION,
          style: 'danger',
          text: { type: 'plain_text', text: s.reject, emoji: true },
          value: n.workflowId,
          confirm: {
            title: { type: 'plain_text', text: s.reject },
            text: { type: 'mrkdwn', text: `${s.confirmReject}\n${esc(truncate(oneLine(n.title), 250))}` },
            confirm: { type: 'plain_text', text: s.reject },
            deny: { type: 'plain_text', text: s.cancel },
            style: 'danger',
          },
        },
      ],
    });
    const line = approvalLine(n, s, people);
    if (line) blocks.push(context(line));
  } else {
    const decided = decisionLine(n, s, people);
    if (decided) blocks.push(context(decided));
  }

  const shown = n.timeline.slice(-ROOT_TIMELINE_ENTRIES);
  const hidden = n.timeline.length - shown.length;
  const timeline = shown.length ? shown.map((e) => entryLine(e, 150)) : [`_${s.noSteps}_`];
  if (hidden > 0) timeline.unshift(`_${s.earlier(hidden)}_`);
  blocks.push(section(`*${s.timeline}*\n${timeline.join('\n')}`));

  blocks.push(context(`${s.workflow}${s.sep}\`${esc(n.workflowId)}\` · ${s.started}${s.sep}${slackDate(n.startedAt)}`));

  let text = `${KIND_ICON[n.kind]} [${n.severity}] ${esc(oneLine(n.title))} — ${s.status}${s.sep}${esc(oneLine(n.status))}`;
  if (APPROVAL_OPEN.has(n.kind)) {
    const a = n.approval;
    text = `${n.kind === 'approval-reminder' ? s.reminder : s.approvalNeeded}${s.sep}${text}`;
    if (a?.approvers.length) text += ` (${s.approvers}${s.sep}${a.approvers.map((p) => who(p, people)).join(', ')})`;
  }
  return { text: truncate(text, 3000), blocks };
}

/**
 * The reply posted in the root's thread, or undefined for kinds that only update the root
 * (`incident-opened`, `approval-needed`). `step`: one line; final kinds: the whole timeline.
 */
export function buildThreadReply(n: RunbookNotification, locale: SlackLocale, people: readonly Person[] = []): SlackMessage | undefined {
  const s = STRINGS[locale] ?? STRINGS.en;
  switch (n.kind) {
    case 'step': {
      const line = n.step ? entryLine(n.step, 1500) : statusText(n);
      return { text: line, blocks: [section(line)] };
    }
    case 'alert': {
      // The monitor's thread: the root shows the latest state, each change is one reply.
      const line = `${KIND_ICON.alert} [${n.severity}] ${esc(oneLine(n.status))}`;
      return { text: truncate(line, 3000), blocks: [section(line)] };
    }
    case 'approval-decided': {
      const line = decisionLine(n, s, people) ?? statusText(n);
      return { text: line, blocks: [section(line)] };
    }
    case 'approval-reminder': {
      const detail = approvalLine(n, s, people);
      const line = `🔔 ${s.reminder}${detail ? `\n${detail}` : ''}`;
      return { text: line, blocks: [section(line)] };
    }
    case 'needs-attention': {
      const a = n.attention;
      const lines = [`🆘 *${s.needsAttention}*`];
      if (a) {
        lines.push(`*${esc(a.step)}*${s.sep}${esc(oneLine(a.error))}`, `${s.left}${s.sep}${a.left.map(esc).join(', ')}`, `${s.resumeWith}${s.sep}\`${esc(a.resume)}\``);
      }
      return { text: truncate(lines.join('\n'), 3000), blocks: [section(lines.join('\n'))] };
    }
    case 'completed':
    case 'failed':
    case 'aborted': {
      const total = n.endedAt !== undefined ? n.endedAt - n.startedAt : undefined;
      const head = `${KIND_ICON[n.kind]} *${s.final[n.kind]}*${s.sep}${esc(oneLine(n.status))}${
        total !== undefined ? ` · ${s.total}${s.sep}${formatDuration(total)}` : ''
      }`;
      const lines = n.timeline.map((e) => {
        const offset = e.startedAt >= n.startedAt ? `+${formatDuration(e.startedAt - n.startedAt)}` : '';
        return `\`${String(e.seq).padStart(2)}\` ${offset ? `${offset} ` : ''}${entryLine(e, 500)}`;
      });
      const blocks: SlackBlock[] = [section(head), ...sections([`*${s.timeline}*`, ...(lines.length ? lines : [`_${s.noSteps}_`])])];
      if (n.rootCause) blocks.push(section(`*${s.rootCause}*\n${esc(n.rootCause)}`));
      if (n.followUp?.length) blocks.push(section(`*${s.followUp}*\n${n.followUp.map((f) => `• ${esc(f)}`).join('\n')}`));
      if (n.accessReport) {
        const r = accessReportLines(n.accessReport, locale);
        blocks.push(...sections([`*${r.heading}*`, ...r.lines.map((l) => `• ${esc(l)}`)]));
      }
      return { text: truncate([head, ...lines].join('\n'), 3900), blocks: blocks.slice(0, 50) };
    }
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The notifier

/** A failed Slack call: `chat.postMessage failed: channel_not_found`. */
export class SlackCallError extends Error {
  override name = 'SlackCallError';
  constructor(
    readonly method: string,
    /** Slack's error code (`channel_not_found`, `ratelimited`, …) or `http_503`, `timeout`, `request_failed`. */
    readonly slackError: string,
    detail?: string,
  ) {
    super(`${method} failed: ${slackError}${detail ? ` (${detail})` : ''}`);
  }
}

type SlackMethod = 'chat.postMessage' | 'chat.update';

export class SlackNotifier implements Notifier {
  readonly name = 'slack';
  private readonly config: RunbookConfig;
  private readonly client: WebClient;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly maxRetryTimeMs: number;

  /** A notifier from SLACK_BOT_TOKEN (required) and SLACK_API_URL (optional); undefined without a token. */
  static fromEnv(config: RunbookConfig, env: NodeJS.ProcessEnv = process.env): SlackNotifier | undefined {
    const token = env.SLACK_BOT_TOKEN?.trim();
    if (!token) return undefined;
    const apiUrl = env.SLACK_API_URL?.trim() || undefined;
    return new SlackNotifier({ config, token, apiUrl });
  }

  constructor(opts: SlackNotifierOptions) {
    this.config = opts.config;
    this.token = opts.token;
    const retries = Math.max(0, Math.floor(opts.retries ?? DEFAULT_RETRIES));
    // `retry` treats 0 as "no limit": keep at least 1 ms.
    this.maxRetryTimeMs = Math.max(1, opts.maxRetryTimeMs ?? DEFAULT_MAX_RETRY_TIME_MS);
    this.timeoutMs = Math.max(1, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const maxTimeout = Math.max(1, Math.min(4_000, this.maxRetryTimeMs));
    const budgetMs = this.maxRetryTimeMs;

    // WebClient sleeps a 429's whole Retry-After before retrying, whatever the retry budget: a
    // Retry-After longer than the budget is answered at once as Slack's `ratelimited` error instead.
    const fetchWithBudget: FetchFunction = async (url, init) => {
      const res = await globalThis.fetch(url, init);
      if (res.status === 429) {
        const after = Number.parseInt(res.headers.get('retry-after') ?? '', 10);
        if (Number.isFinite(after) && after * 1000 > budgetMs) {
          await res.body?.cancel().catch(() => undefined);
          return new Response(JSON.stringify({ ok: false, error: 'ratelimited', retry_after: after }), {
            status: 200,
            headers: { 'content-type': 'application/json', 'retry-after': String(after) },
          });
        }
      }
      return res;
    };

    this.client = new WebClient(opts.token, {
      ...(opts.apiUrl ? { slackApiUrl: opts.apiUrl } : {}),
      // Default logger at ERROR: it never prints the token (WebClient redacts it even at DEBUG).
      logLevel: LogLevel.ERROR,
      rejectRateLimitedCalls: false,
      timeout: this.timeoutMs,
      fetch: fetchWithBudget,
      retryConfig: {
        retries,
        maxRetryTime: this.maxRetryTimeMs,
        factor: 2,
        minTimeout: Math.min(500, maxTimeout),
        maxTimeout,
        randomize: true,
      },
    });
  }

  async send(n: RunbookNotification, thread: NotifyThread): Promise<NotifyThread | void> {
    const cluster = this.config.clusters[n.cluster];
    const channel = cluster?.notify.slack?.channel;
    if (!cluster || !channel) return thread;
    const locale: SlackLocale = cluster.locale;
    const people = cluster.people;
    const root = buildRootMessage(n, locale, APPROVAL_OPEN.has(n.kind), people);
    const reply = REPLY_KINDS.has(n.kind) ? buildThreadReply(n, locale, people) : undefined;

    if (!thread.slack) {
      const res = await this.call('chat.postMessage', () =>
        this.client.chat.postMessage({ channel, text: root.text, blocks: root.blocks, unfurl_links: false, unfurl_media: false }),
      );
      if (!res.ts) throw new SlackCallError('chat.postMessage', 'no_ts', 'the answer carried no message ts');
      const slack = { channel: res.channel ?? channel, ts: res.ts };
      // A run whose root could not be posted earlier still gets its final summary.
      if (reply && FINAL_KINDS.has(n.kind)) await this.postReply(slack, reply);
      return { ...thread, slack };
    }

    const slack = thread.slack;
    // Update and reply at once: a slow Slack costs one bounded wait, not two.
    const outcomes = await Promise.allSettled([
      this.call('chat.update', () => this.client.chat.update({ channel: slack.channel, ts: slack.ts, text: root.text, blocks: root.blocks })),
      reply ? this.postReply(slack, reply) : Promise.resolve(),
    ]);
    const errors = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as Error] : []));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new Error(errors.map((e) => e.message).join('; '));
    return thread;
  }

  private async postReply(slack: { channel: string; ts: string }, reply: SlackMessage): Promise<void> {
    await this.call('chat.postMessage', () =>
      this.client.chat.postMessage({
        channel: slack.channel,
        thread_ts: slack.ts,
        text: reply.text,
        blocks: reply.blocks,
        unfurl_links: false,
        unfurl_media: false,
      }),
    );
  }

  private async call<T>(method: SlackMethod, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await fn();
    } catch (err) {
      throw this.describe(method, err, Date.now() - started);
    }
  }

  /** Slack's error code and a short detail; the token is scrubbed from anything that reaches the message. */
  private describe(method: SlackMethod, err: unknown, elapsedMs: number): SlackCallError {
    const e = err as {
      code?: string;
      message?: string;
      data?: { error?: unknown; response_metadata?: { retryAfter?: number } };
      statusCode?: number;
      retryAfter?: number;
      original?: Error;
      attemptNumber?: number;
    };
    const attempts = typeof e.attemptNumber === 'number' ? `gave up after ${e.attemptNumber} attempt(s) in ${formatDuration(elapsedMs)}` : undefined;
    let code: string;
    let detail: string | undefined;
    switch (e?.code) {
      case ErrorCode.PlatformError: {
        code = typeof e.data?.error === 'string' ? e.data.error : 'unknown_error';
        const after = e.data?.response_metadata?.retryAfter;
        if (code === 'ratelimited' && after !== undefined) detail = `Retry-After ${after} s exceeds the ${formatDuration(this.maxRetryTimeMs)} retry budget`;
        break;
      }
      case ErrorCode.RateLimitedError:
        code = 'ratelimited';
        detail = `retry after ${e.retryAfter} s`;
        break;
      case ErrorCode.HTTPError:
        code = `http_${e.statusCode}`;
        detail = attempts;
        break;
      case ErrorCode.RequestError:
        if (e.original?.name === 'TimeoutError' || e.original?.name === 'AbortError') {
          code = 'timeout';
          detail = `no answer within ${this.timeoutMs} ms${attempts ? `; ${attempts}` : ''}`;
        } else {
          code = 'request_failed';
          detail = [e.original?.message ?? e.message, attempts].filter(Boolean).join('; ');
        }
        break;
      default:
        code = 'error';
        detail = [err instanceof Error ? err.message : String(err), attempts].filter(Boolean).join('; ');
    }
    const scrub = (s: string) => (this.token ? s.split(this.token).join('[redacted]') : s);
    return new SlackCallError(method, scrub(code), detail === undefined ? undefined : scrub(detail));
  }
}
