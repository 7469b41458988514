/**
 * `runbook log`: failover_log, newest first. On-call engineers run it often, so it is a quick
 * command (built on its own and run with V8's code cache, see codeCache.ts): it loads the config,
 * the control database's reader and the output, nothing else.
 */
import { failoverHistory, withControl } from '../../adapters/control/store';
import { configPathFromEnv, loadConfig } from '../../config/load';
import { incidentIdProblem, INPUT_LIMITS, nameProblem, textProblem } from '../../core/inputs';
import { printHistory, printJson } from './output';

/** The config is the CLI's (`-c` reaches it through RUNBOOK_CONFIG, as every command's does). */
export async function showLog(o: { cluster?: string; incident?: string; workflow?: string; page: number; pageSize: number; json?: boolean; wide?: boolean }): Promise<void> {
  const cfg = loadConfig(configPathFromEnv());
  const problem = [nameProblem('--cluster', o.cluster), incidentIdProblem('--incident', o.incident), textProblem('--workflow', o.workflow, INPUT_LIMITS.workflowId)].find(Boolean);
  if (problem) throw new Error(problem);
  const rows = await withControl(cfg, (c) => failoverHistory(c, { cluster: o.cluster, incidentId: o.incident, workflowId: o.workflow, page: o.page, pageSize: o.pageSize }));
  if (o.json) printJson(rows);
  else printHistory(rows, o.page, Boolean(o.wide), 'newest-first');
}
