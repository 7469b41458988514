/** `runbook serve`: the approval endpoint as its own process, secrets from the environment. */
import { WebClient } from '@slack/web-api';
import type { RunbookConfig } from '../config/load';
import { migrateControl } from '../adapters/control/store';
import { linkKeyFromEnv } from '../adapters/notify/links';
import { connectClient } from '../adapters/temporal/client';
import { startApprovalServer } from './approvalServer';

export async function serveApprovals(config: RunbookConfig, port: number, host: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  await migrateControl(config);
  const client = await connectClient(env);
  const slack = env.SLACK_BOT_TOKEN ? new WebClient(env.SLACK_BOT_TOKEN, env.SLACK_API_URL ? { slackApiUrl: env.SLACK_API_URL } : {}) : undefined;
  const server = await startApprovalServer({
    config, client, port, host, slackSigningSecret: env.SLACK_SIGNING_SECRET, slack, linkKey: linkKeyFromEnv(env), trustProxy: env.RUNBOOK_HTTP_TRUST_PROXY === 'true',
    panel: { token: env.RUNBOOK_PANEL_TOKEN || undefined, uiUrl: env.TEMPORAL_UI_URL, namespace: env.TEMPORAL_NAMESPACE },
  });
  console.log(`approval endpoint on ${server.url}: Slack ${env.SLACK_SIGNING_SECRET ? 'on' : 'off (no SLACK_SIGNING_SECRET)'}, email links ${linkKeyFromEnv(env) ? 'on' : 'off (no RUNBOOK_LINK_SIGNING_KEY)'}, status panel ${env.RUNBOOK_PANEL_TOKEN ? `on at ${server.url}/` : 'off (no RUNBOOK_PANEL_TOKEN)'}`);
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  await server.close();
  await client.connection.close();
}
