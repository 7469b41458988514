/**
 * Search attributes every runbook keeps up to date, so incidents can be found and followed in the
 * Temporal UI without opening payloads. Workflow-safe (no I/O). The dev server registers them at
 * start (`--search-attribute`); against another server the worker registers any that are missing.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const RunbookType = defineSearchAttributeKey('RunbookType', SearchAttributeType.KEYWORD);
export const Cluster = defineSearchAttributeKey('Cluster', SearchAttributeType.KEYWORD);
export const IncidentId = defineSearchAttributeKey('IncidentId', SearchAttributeType.KEYWORD);
export const RunbookStatus = defineSearchAttributeKey('RunbookStatus', SearchAttributeType.KEYWORD);
export const Operator = defineSearchAttributeKey('Operator', SearchAttributeType.KEYWORD);

export const RUNBOOK_SEARCH_ATTRIBUTES = [RunbookType, Cluster, IncidentId, RunbookStatus, Operator];
