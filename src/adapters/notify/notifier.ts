/** What every notification channel implements (Slack, email, the log). */
import type { NotifyThread, RunbookNotification } from '../../core/notifications';

/**
 * A channel. `send` gets the run's thread state (e.g. where the Slack root message is) and may
 * return an updated one, which the workflow keeps for the next notification.
 */
export interface Notifier {
  name: string;
  send(n: RunbookNotification, thread: NotifyThread): Promise<NotifyThread | void>;
}
