/**
 * Email notifier: renders each notification in the cluster's locale (seed §7.3 templates) and sends
 * it over SMTP to the cluster's `notify.email.to`. Approval requests go out one message per
 * recipient, each with approve / reject links signed for that recipient's approver identity.
 *
 * Secrets (the SMTP password, the link signing key, the tokens in links) are never logged and never
 * appear in an error message; a failed delivery throws, naming the SMTP host and the error, and the
 * notify activity reports it. Credentials never cross the wire in clear: with a user and password
 * the connection is TLS from the start (`secure`) or must be upgraded by STARTTLS, else nothing is
 * sent; only an explicit SMTP_ALLOW_INSECURE=true (a test relay on loopback) lifts that.
 */
import { createHash } from 'node:crypto';
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import type { RunbookConfig } from '../../config/load';
import type { ClusterConfig } from '../../core/configSchema';
import type { Notifier } from './notifier';
import type { NotifyThread, RunbookNotification } from '../../core/notifications';
import { EMAIL_KINDS, renderEmail, type EmailApprovalLinks, type RenderedEmail } from './emailTemplates';
import { approvalLinks, linkKeyFromEnv, LINK_KEY_ENV } from './links';
import { redactSecrets } from '../process/processes';

export const DEFAULT_LINK_TTL_MS = 30 * 60_000;

export interface EmailNotifierOptions {
  config: RunbookConfig;
  /** SMTP options for nodemailer, or a ready transporter (tests, pooled or non-SMTP transports). */
  transport: SMTPTransport.Options | Transporter;
  /** The From address, e.g. `"DB runbooks" <runbooks@example.com>`. */
  from: string;
  /** Signs approval links (RUNBOOK_LINK_SIGNING_KEY); without it (or publicUrl) mails carry no links. */
  linkKey?: string;
  /** Base URL of the approval page server; links are `${publicUrl}/approve/<token>`. */
  publicUrl?: string;
  /** How long a link works (capped by the approval deadline); default 30 min. */
  linkTtlMs?: number;
  /** Clock for link expiry (tests). */
  now?: () => number;
  /** Send SMTP credentials over a connection without TLS (SMTP_ALLOW_INSECURE=true). Default: never. */
  allowInsecureAuth?: boolean;
}

const APPROVAL_KINDS = new Set(['approval-needed', 'approval-reminder']);

function isTransporter(t: SMTPTransport.Options | Transporter): t is Transporter {
  return typeof (t as Transporter).sendMail === 'function';
}

function envError(message: string): Error {
  return new Error(`email notifier: ${message}`);
}

/** The approver identity a recipient's links carry: their `people` name, else the address itself. */
export function approverForEmail(cluster: ClusterConfig, address: string): string {
  const wanted = address.trim().toLowerCase();
  return cluster.people.find((p) => p.email?.toLowerCase() === wanted)?.name ?? address;
}

export class EmailNotifier implements Notifier {
  readonly name = 'email';
  private readonly config: RunbookConfig;
  private readonly transporter: Transporter;
  private readonly from: string;
  private readonly linkKey?: string;
  private readonly publicUrl?: string;
  private readonly linkTtlMs: number;
  private readonly now: () => number;
  /** `host:port`, for error messages. */
  readonly server: string;
  /** Values scrubbed from any error message, should a library ever echo one. */
  private readonly secrets: string[];

  constructor(opts: EmailNotifierOptions) {
    this.config = opts.config;
    this.from = opts.from;
    this.linkKey = opts.linkKey;
    this.publicUrl = opts.publicUrl?.replace(/\/+$/, '');
    this.linkTtlMs = opts.linkTtlMs ?? DEFAULT_LINK_TTL_MS;
    this.now = opts.now ?? Date.now;
    if (isTransporter(opts.transport)) {
      this.transporter = opts.transport;
      const o = (opts.transport.transporter as { options?: { host?: string; port?: number } } | undefined)?.options;
      this.server = o?.host ? `${o.host}${o.port ? `:${o.port}` : ''}` : (opts.transport.transporter?.name ?? 'mail transport');
      this.secrets = [];
    } else {
      const o = opts.transport;
      // Credentials go only over TLS: implicit (secure) or a STARTTLS upgrade that must succeed;
      // nodemailer then fails before AUTH rather than falling back to a cleartext login.
      const tlsForCredentials = o.auth && !o.secure && !opts.allowInsecureAuth ? { requireTLS: true, ignoreTLS: false, opportunisticTLS: false } : {};
      // A notification that hangs holds its activity: fail fast instead (nodemailer waits minutes).
      this.transporter = nodemailer.createTransport({ connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000, ...o, ...tlsForCredentials, logger: false, debug: false });
      this.server = `${o.host ?? 'localhost'}:${o.port ?? (o.secure ? 465 : 587)}`;
      const pass = o.auth && 'pass' in o.auth ? o.auth.pass : undefined;
      this.secrets = typeof pass === 'string' && pass ? [pass] : [];
    }
    if (this.linkKey) this.secrets.push(this.linkKey);
  }

  /**
   * From the environment: undefined when SMTP_HOST is unset (email is optional); a clear error for
   * a half-done setup. SMTP_PORT (587), SMTP_SECURE (true|false; default true on 465), SMTP_USER
   * with SMTP_PASSWORD (sent only over TLS unless SMTP_ALLOW_INSECURE=true), SMTP_FROM,
   * RUNBOOK_LINK_SIGNING_KEY and RUNBOOK_PUBLIC_URL for links.
   */
  static fromEnv(config: RunbookConfig, env: NodeJS.ProcessEnv = process.env): EmailNotifier | undefined {
    const host = env.SMTP_HOST?.trim();
    if (!host) return undefined;
    const from = env.SMTP_FROM?.trim();
    if (!from) throw envError('SMTP_FROM must be set when SMTP_HOST is set (the From address, e.g. runbooks@example.com)');

    const portText = env.SMTP_PORT?.trim() || '587';
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw envError(`SMTP_PORT must be a port number (1-65535), got "${portText}"`);

    const secureText = env.SMTP_SECURE?.trim().toLowerCase();
    if (secureText && secureText !== 'true' && secureText !== 'false') throw envError(`SMTP_SECURE must be "true" or "false", got "${env.SMTP_SECURE}"`);
    const secure = secureText ? secureText === 'true' : port === 465;

    const insecureText = env.SMTP_ALLOW_INSECURE?.trim().toLowerCase();
    if (insecureText && insecureText !== 'true' && insecureText !== 'false') throw envError(`SMTP_ALLOW_INSECURE must be "true" or "false", got "${env.SMTP_ALLOW_INSECURE}"`);

    const user = env.SMTP_USER || undefined;
    const pass = env.SMTP_PASSWORD || undefined;
    if (Boolean(user) !== Boolean(pass)) throw envError('SMTP_USER and SMTP_PASSWORD must be set together (or neither)');

    const linkKey = linkKeyFromEnv(env);
    const publicUrl = env.RUNBOOK_PUBLIC_URL?.trim() || undefined;
    if (publicUrl) {
      let url: URL | undefined;
      try {
        url = new URL(publicUrl);
      } catch {
        url = undefined;
      }
      if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) throw envError(`RUNBOOK_PUBLIC_URL must be an http(s) URL, got "${publicUrl}"`);
      if (!linkKey) throw envError(`RUNBOOK_PUBLIC_URL is set but ${LINK_KEY_ENV} is not: approval links cannot be signed`);
    }

    return new EmailNotifier({
      config,
      transport: { host, port, secure, ...(user && pass ? { auth: { user, pass } } : {}) },
      from,
      linkKey,
      publicUrl,
      allowInsecureAuth: insecureText === 'true',
    });
  }

  /** Whether approval mails carry signed links (else they point to the CLI). */
  get linksEnabled(): boolean {
    return Boolean(this.linkKey && this.publicUrl);
  }

  async send(n: RunbookNotification, _thread?: NotifyThread): Promise<void> {
    const cluster = this.config.clusters[n.cluster];
    if (!cluster) throw new Error(`email: unknown cluster "${n.cluster}"`);
    const to = cluster.notify.email?.to ?? [];
    if (!to.length || !EMAIL_KINDS.includes(n.kind)) return;

    if (!APPROVAL_KINDS.has(n.kind)) {
      const mail = renderEmail(n, cluster.locale);
      if (mail) await this.deliver(n, to, mail);
      return;
    }

    // Approval: one message per recipient, each with links for that recipient only.
    const outcomes = await Promise.allSettled(
      to.map(async (address) => {
        const mail = renderEmail(n, cluster.locale, this.linksFor(n, approverForEmail(cluster, address)));
        if (mail) await this.deliver(n, [address], mail);
      }),
    );
    const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`${to[i]}: ${(o.reason as Error).message}`] : []));
    if (failed.length) throw new Error(`approval email not delivered to ${failed.length} of ${to.length} recipient(s): ${failed.join('; ')}`);
  }

  private linksFor(n: RunbookNotification, approver: string): EmailApprovalLinks | undefined {
    if (!this.linkKey || !this.publicUrl) return undefined;
    const now = this.now();
    const untilDeadline = n.approval ? n.approval.deadline - now : Infinity;
    // A link never outlives the approval it is for (unless the deadline already passed).
    const ttlMs = untilDeadline > 0 ? Math.min(this.linkTtlMs, untilDeadline) : this.linkTtlMs;
    const links = approvalLinks({ baseUrl: this.publicUrl, key: this.linkKey, workflowId: n.workflowId, approver, ttlMs, now });
    return { ...links, expiresAt: now + ttlMs };
  }

  /** Messages about one run thread together in mail clients, under the incident notice. */
  private threadHeaders(n: RunbookNotification): { messageId?: string; inReplyTo?: string; references?: string } {
    const domain = /@([^>\s]+)>?\s*$/.exec(this.from)?.[1] ?? 'runbook.invalid';
    const root = `<run-${createHash('sha256').update(n.workflowId).digest('hex').slice(0, 32)}@${domain}>`;
    return n.kind === 'incident-opened' ? { messageId: root } : { inReplyTo: root, references: root };
  }

  private async deliver(n: RunbookNotification, to: string[], mail: RenderedEmail): Promise<void> {
    try {
      await this.transporter.sendMail({
        from: this.from,
        to,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        ...this.threadHeaders(n),
        priority: n.kind === 'incident-opened' || n.kind === 'failed' ? 'high' : 'normal',
        headers: {
          'Auto-Submitted': 'auto-generated',
          'X-Runbook-Cluster': n.cluster,
          'X-Runbook-Workflow-Id': n.workflowId,
          'X-Runbook-Kind': n.kind,
        },
      });
    } catch (err) {
      const tls = (err as { code?: string }).code === 'ETLS' ? ' (credentials are sent only over TLS: use SMTP_SECURE=true, or a relay that offers STARTTLS)' : '';
      throw new Error(`email via SMTP ${this.server} failed: ${this.scrub(err instanceof Error ? err.message : String(err))}${tls}`);
    }
  }

  private scrub(message: string): string {
    return redactSecrets(message, this.secrets);
  }

  /** Close the transport's connections (pooled transports). */
  close(): void {
    this.transporter.close();
  }
}
