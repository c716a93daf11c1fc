// Renders a partial sync of one kube-proxy table: the nft commands that
// turn the Service part of the table from the model that was last applied
// into the current one. kube-proxy's nftables proxier does the same between
// full syncs (syncProxyRules in kubernetes/kubernetes
// pkg/proxy/nftables/proxier.go, commit b0f823e6). Unchanged chains and
// elements get no command, so `nft monitor` reports only what changed.
//
// The commands come in this order, so that every reference resolves inside
// the transaction:
//   1. new chains are added and flushed, and changed chains flushed, then
//      their rules are added, targets before the chains that jump to them;
//   2. elements that are gone or whose value changed are deleted, then new
//      and changed elements are added;
//   3. chains that are gone are flushed but not deleted.
// kube-proxy deletes a flushed chain no sooner than one second later,
// because kernels before 6.2 notice only after a short time that a deleted
// map element no longer refers to the chain, so an earlier deletion fails.
// The caller deletes the chains in removedChains with renderChainDeletion()
// after that delay.

import type { ServiceRules } from './kube-proxy-service-rules.js';

export interface TableChanges {
  commands: string[];
  // Chains that the commands flush because the current model no longer
  // has them.
  removedChains: string[];
}

// Renders the commands that change table (such as "ip kube-proxy") from
// previous to next. Both models must be of that table's family.
export function renderChanges(table: string, previous: ServiceRules, next: ServiceRules): TableChanges {
  const commands: string[] = [];

  for (const [chain, rules] of next.chains) {
    const previousRules = previous.chains.get(chain);
    if (previousRules !== undefined && sameRules(previousRules, rules)) continue;

    // A chain that is new to the model may still exist in the kernel,
    // flushed and waiting for deletion, so it is flushed after the add in
    // either case.
    if (previousRules === undefined) commands.push(`add chain ${table} ${chain}`);
    commands.push(`flush chain ${table} ${chain}`);
    for (const rule of rules) commands.push(`add rule ${table} ${chain} ${rule}`);
  }

  const additions: string[] = [];
  for (const [set, elements] of next.elements) {
    const previousElements = previous.elements.get(set) ?? new Map<string, string>();
    for (const [key, value] of previousElements) {
      if (elements.get(key) !== value) commands.push(`delete element ${table} ${set} { ${key} }`);
    }
    for (const [key, value] of elements) {
      if (previousElements.get(key) !== value) additions.push(`add element ${table} ${set} { ${key}${value} }`);
    }
  }
  commands.push(...additions);

  const removedChains = [...previous.chains.keys()].filter((chain) => !next.chains.has(chain));
  for (const chain of removedChains) commands.push(`flush chain ${table} ${chain}`);

  return { commands, removedChains };
}

// Renders the commands that delete chains that an earlier partial sync
// flushed.
export function renderChainDeletion(table: string, chains: Iterable<string>): string[] {
  return [...chains].map((chain) => `delete chain ${table} ${chain}`);
}

function sameRules(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((rule, i) => rule === b[i]);
}
