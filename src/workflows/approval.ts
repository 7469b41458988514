/**
 * Human approval, shared by every runbook. Decisions arrive as `approve` / `reject` signals (Slack,
 * email links) or as the `decide` update (the CLI, which wants the verdict at once). Both go through
 * one check: the allow-list of approvers, four-eyes (the requester may not approve their own run),
 * one decision only. A refused decision is never dropped silently: it is logged in failover_log
 * and kept in the run's state. Unanswered requests are re-announced every `remindEveryMinutes`
 * and time out after `timeoutMinutes`.
 */
import * as wf from '@temporalio/workflow';
import type { ApprovalRule } from '../config/schema';
import type { Runbook } from './runbook';

export interface DecisionInput {
  approver: string;
  /** Where the decision came from: cli, slack, email. */
  channel?: string;
  comment?: string;
}

export interface DecisionRecord extends DecisionInput {
  decision: 'approve' | 'reject';
  at: number;
  accepted: boolean;
  refusedBecause?: string;
}

export type ApprovalStatus = 'not_requested' | 'pending' | 'approved' | 'auto_approved' | 'rejected' | 'timed_out';

export interface ApprovalState {
  status: ApprovalStatus;
  requester: string;
  rule: ApprovalRule;
  /** Why a human is needed even though the policy says auto (e.g. fencing not confirmed). */
  forcedBecause?: string;
  requestedAt?: number;
  deadline?: number;
  decisions: DecisionRecord[];
}

export interface DecisionVerdict {
  accepted: boolean;
  status: ApprovalStatus;
  reason?: string;
}

export const approveSignal = wf.defineSignal<[DecisionInput]>('approve');
export const rejectSignal = wf.defineSignal<[DecisionInput]>('reject');
export const decideUpdate = wf.defineUpdate<DecisionVerdict, [DecisionInput & { decision: 'approve' | 'reject' }]>('decide');

const now = () => Date.now(); // workflow time, deterministic

export class ApprovalGate {
  readonly state: ApprovalState;

  constructor(
    private readonly rb: Runbook,
    rule: ApprovalRule,
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

  /** Why this decision may not count, or undefined if it may. */
  private refusal(d: DecisionInput & { decision: 'approve' | 'reject' }): string | undefined {
    const { status, requester, rule } = this.state;
    const approver = d.approver?.trim();
    if (!approver) return 'no approver identity given';
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
    const reason = this.refusal(d);
    const record: DecisionRecord = { ...d, channel: d.channel ?? 'unknown', at: now(), accepted: !reason, refusedBecause: reason };
    this.state.decisions.push(record);
    const who = `${d.approver || '(nobody)'} via ${record.channel}`;
    if (reason) {
      this.rb.event(`${d.decision} by ${who}`, 'refused', { approver: d.approver, channel: record.channel, decision: d.decision, reason, comment: d.comment }, reason);
      return { accepted: false, status: this.state.status, reason };
    }
    this.state.status = d.decision === 'approve' ? 'approved' : 'rejected';
    this.rb.event(`${d.decision} by ${who}`, this.state.status as 'approved' | 'rejected', { approver: d.approver, channel: record.channel, comment: d.comment }, d.comment);
    this.rb.notify('approval-decided', {
      status: `${this.state.status} by ${d.approver}`,
      decision: { decision: d.decision, approver: d.approver, channel: record.channel ?? 'unknown', comment: d.comment },
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
