/**
 * The name of the query every run answers with its state. runbookDefinitions.ts defines the query
 * with it; `runbook status` sends it by name (adapters/temporal/quickReads.ts), and this file imports
 * nothing, so that status loads neither Temporal's workflow package nor its client.
 */
export const RUNBOOK_STATE_QUERY = 'runbookState';
