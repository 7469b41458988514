import type { RunbookConfig } from '../config/load';

/** What every activity group is built from: the loaded config (hosts and credential references). */
export interface ActivityDeps {
  config: RunbookConfig;
}
