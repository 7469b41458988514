/**
 * Human approval, shared by every runbook. Decisions arrive as `approve` / `reject` signals (Slack,
 * email links) or as the `decide` update (the CLI, which wants the verdict at once). Both go through
 * one check: the channel is one the policy allows, the decider's identity is verified (Slack and
 * email: by the endpoint, from the request signature or the signed link; CLI: the OS login through
 * people[].login, see src/shared/identity.ts), the allow-list of approvers, four-eyes (the requester
 * may not approve their own run), one decision only. A refused decision is never dropped silently: it is logged in failover_log
 * and kept in the run's state. Unanswered requests are re-announced every `remindEveryMinutes`
 * and time out after `timeoutMinutes`.
 */
import * as wf from '@temporalio/workflow';
import type { ApprovalChannel } from '../../core/configSchema';
import type { ApprovalPolicy } from '../../core/failover';
import { cliIdentity, type VerifiedBy } from '../../core/identity';
import { clip, identityProblem, INPUT_LIMITS, textProblem } from '../../core/inputs';
import type { Runbook } from './runbook';
import { approveSignal, decideUpdate, rejectSignal, type ApprovalState, type DecisionInput, type DecisionRecord, type DecisionVerdict } from '../../core/runbookDefinitions';

const CHANNELS: readonly ApprovalChannel[] = ['slack', 'email', 'cli'];

const now = () => Date.now(); // workflow time, deterministic

export class ApprovalGate {
  readonly state: ApprovalState;

  constructor(
    private readonly rb: Runbook,
    rule: ApprovalPolicy,
    requester: string,
  ) {
    this.state = { status: 'not_requested', requester, rule, decisions: [] };
    rb.details.approval = this.state;
    wf.setHandler(approveSignal, (d) => void this.decide({ ...d, decision: 'approve' }));
    wf.setHandler(rejectSignal, (d) => void this.decide({ ...d, decision: 'reject' }));
    wf.setHandler(decideUpdate, (d) => this.decide(d), {
      validator: (d) => {
        if (!d || (d.decision !== 'approve' && d.decision !== 'reject')) throw new Error('decision must be "approve" or "reject"');
      },
    });
  }

  /** Who is deciding, through which channel, as far as can be verified; or why that is refused. */
  private identify(d: DecisionInput): { identity?: string; verifiedBy?: VerifiedBy; refusal?: string } {
    const { rule } = this.state;
    const bad =
      identityProblem('approver', d.approver) ?? textProblem('login', d.login, INPUT_LIMITS.login) ?? textProblem('comment', d.comment, INPUT_LIMITS.comment) ?? textProblem('channel', d.channel, 16);
    if (bad) return { refusal: bad };
    const channel = d.channel as ApprovalChannel | undefined;
    if (!channel || !CHANNELS.includes(channel)) return { refusal: `unknown channel ${d.channel ?? '(none)'}: decisions come through ${CHANNELS.join(', ')}` };
    const allowed = rule.channels ?? CHANNELS;
    if (!allowed.includes(channel)) return { refusal: `${channel} is not an approval channel of this run (${allowed.join(', ')})` };
    if (channel === 'cli') {
      const who = cliIdentity(rule, d.login, d.approver?.trim() || undefined);
      return who.ok ? { identity: who.identity, verifiedBy: who.verifiedBy } : { refusal: who.refusal };
    }
    // The endpoint names the person only after checking the request's signature (Slack) or the link's (email).
    const identity = d.approver?.trim();
    if (!identity) return { refusal: 'no approver identity given' };
    return { identity, verifiedBy: channel === 'slack' ? 'slack-signature' : 'signed-link' };
  }

  /** Why this decision may not count, or undefined if it may. */
  private refusal(d: DecisionInput & { decision: 'approve' | 'reject' }, approver: string): string | undefined {
    const { status, requester, rule } = this.state;
    if (status === 'not_requested') return 'no approval has been requested yet';
    if (status !== 'pending') return `already decided: ${status}`;
    const isRequester = approver === requester;
    if (d.decision === 'approve' && isRequester && rule.fourEyes) return `four-eyes: ${approver} requested this run and may not approve it`;
    const listed = rule.approvers.length === 0 || rule.approvers.includes(approver);
    // The requester may always call off their own run; anyone else must be an approver.
    if (!listed && !(d.decision === 'reject' && isRequester)) return `${approver} is not an approver (${rule.approvers.join(', ')})`;
    return undefined;
  }

  private decide(d: DecisionInput & { decision: 'approve' | 'reject' }): DecisionVerdict {
    const { identity, verifiedBy, refusal } = this.identify(d);
    const reason = refusal ?? this.refusal(d, identity!);
    // What a refused decision carried is kept, cut to fit: the audit row must be writable.
    const text = (v: unknown, max: number) => (typeof v === 'string' ? clip(v, max) : undefined);
    const channel = text(d.channel, 16) ?? 'unknown';
    const declared = text(d.approver, INPUT_LIMITS.identity);
    const login = text(d.login, INPUT_LIMITS.login);
    const comment = text(d.comment, INPUT_LIMITS.comment);
    const record: DecisionRecord = { decision: d.decision, approver: declared, channel, login, comment, at: now(), accepted: !reason, refusedBecause: reason, identity, verifiedBy };
    this.state.decisions.push(record);
    // A refused CLI decision is named after the login that typed it, not the name it claimed.
    const who = `${identity ?? (login !== undefined ? `login ${login}` : (declared ?? '(nobody)'))} via ${channel}`;
    const audit = { approver: identity ?? declared, channel, verifiedBy, ...(login !== undefined ? { login } : {}), ...(declared !== undefined && declared !== identity ? { declared } : {}) };
    if (reason) {
      this.rb.event(`${d.decision} by ${who}`, 'refused', { ...audit, decision: d.decision, reason, comment }, reason);
      return { accepted: false, status: this.state.status, reason };
    }
    this.state.status = d.decision === 'approve' ? 'approved' : 'rejected';
    this.rb.event(`${d.decision} by ${who}`, this.state.status as 'approved' | 'rejected', { ...audit, comment }, comment);
    this.rb.notify('approval-decided', {
      status: `${this.state.status} by ${identity}`,
      decision: { decision: d.decision, approver: identity!, channel, comment },
    });
    return { accepted: true, status: this.state.status };
  }

  /**
   * Ask for approval of `summary` (markdown) and wait for the verdict. Auto-approves when the rule
   * says so, unless `forceRequired` gives a reason a human must decide anyway.
   */
  async request(opts: { forceRequired?: string } = {}): Promise<'approved' | 'auto_approved' | 'rejected' | 'timed_out'> {
    const { rule } = this.state;
    if (rule.mode === 'auto' && !opts.forceRequired) {
      this.state.status = 'auto_approved';
      this.rb.event('approval', 'auto_approved', { policy: 'auto' }, 'policy: auto-approve');
      return 'auto_approved';
    }
    this.state.forcedBecause = opts.forceRequired;
    this.state.status = 'pending';
    this.state.requestedAt = now();
    this.state.deadline = this.state.requestedAt + rule.timeoutMinutes * 60_000;
    const who = rule.approvers.length ? rule.approvers.join(', ') : 'any operator';
    this.rb.event('approval', 'requested', { approvers: rule.approvers, fourEyes: rule.fourEyes, timeoutMinutes: rule.timeoutMinutes, forcedBecause: opts.forceRequired }, `waiting for ${who}`);
    this.announce('approval-needed');
    for (;;) {
      const remaining = this.state.deadline - now();
      if (remaining <= 0) break;
      const decided = await wf.condition(() => this.state.status !== 'pending', Math.min(remaining, rule.remindEveryMinutes * 60_000));
      if (decided) return this.state.status as 'approved' | 'rejected';
      if (this.state.deadline - now() > 0) {
        this.rb.event('approval reminder', 'reminded', {}, `still waiting for ${who}`);
        this.announce('approval-reminder');
      }
    }
    this.state.status = 'timed_out';
    this.rb.event('approval', 'timed_out', { timeoutMinutes: rule.timeoutMinutes }, `no decision within ${rule.timeoutMinutes} min`);
    return 'timed_out';
  }

  /** Tell the approvers (Slack buttons, email links); delivery never holds the approval up. */
  private announce(kind: 'approval-needed' | 'approval-reminder'): void {
    const { rule, deadline, forcedBecause } = this.state;
    this.rb.notify(kind, {
      status: 'waiting for approval',
      approval: { approvers: rule.approvers, fourEyes: rule.fourEyes, deadline: deadline!, forcedBecause },
    });
  }
}
