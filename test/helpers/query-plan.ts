/** A node of a plan that `EXPLAIN (FORMAT JSON)` returns, with the fields that tests read. */
export interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  Plans?: PlanNode[];
}

/** A row of `EXPLAIN (FORMAT JSON)` output. */
export type ExplainRow = { 'QUERY PLAN': { Plan: PlanNode }[] };

/** Returns `node` and every node below it, depth first. */
export function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}
